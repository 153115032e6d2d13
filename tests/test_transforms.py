"""Letterbox geometry is exactly invertible; training augmentation moves boxes with the pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import CountingReader
from gridyolo.core.letterbox import EvalTransform, boxes_to_input, boxes_to_original, letterbox
from gridyolo.data.dataset import DetectionDataset, collate_detections
from gridyolo.data.transforms import AugmentConfig, TrainTransform
from gridyolo.errors import GridyoloError


@pytest.mark.parametrize("mode", ["letterbox", "stretch"])
@pytest.mark.parametrize("hw", [(480, 640), (640, 427), (300, 300), (17, 1000)])
def test_letterbox_maps_back_exactly(mode, hw):
    image = np.zeros((*hw, 3), np.uint8)
    out, params = letterbox(image, 448, mode)
    assert out.shape == (448, 448, 3)
    boxes = np.array([[0, 0, hw[1], hw[0]], [3.5, 2.25, 10, 11]], np.float32)
    np.testing.assert_allclose(boxes_to_original(boxes_to_input(boxes, params), params), boxes, rtol=1e-5, atol=1e-3)
    full = boxes_to_input(boxes[:1], params)[0]  # the whole image lands exactly on the non-padded area
    nonpad = np.argwhere(letterbox(np.full((*hw, 3), 255, np.uint8), 448, mode)[0][..., 0] > 200)
    assert abs(full[0] - nonpad[:, 1].min()) < 1 and abs(full[2] - (nonpad[:, 1].max() + 1)) < 1
    assert abs(full[1] - nonpad[:, 0].min()) < 1 and abs(full[3] - (nonpad[:, 0].max() + 1)) < 1


def _rectangle_scene(rng):
    image = np.full((300, 400, 3), 90, np.uint8)
    boxes = np.array([[40, 50, 140, 120], [250, 150, 360, 280]], np.float32)
    colours = [(255, 0, 0), (0, 255, 0)]
    for (x1, y1, x2, y2), c in zip(boxes.astype(int), colours):
        image[y1:y2, x1:x2] = c
    return image, boxes, np.array([0, 1])


def test_train_boxes_follow_pixels():
    """After random scale / translate / flip, each box still frames its coloured rectangle."""
    rng = np.random.default_rng(0)
    image, boxes, labels = _rectangle_scene(rng)
    no_colour = AugmentConfig(hue=0.0, saturation=1.0, exposure=1.0, min_visibility=0.9)
    transform = TrainTransform(256, augment=no_colour, seed=0)
    seen = 0
    for _ in range(20):
        out, out_boxes, out_labels = transform(image, boxes, labels)
        assert out.shape == (256, 256, 3) and out.dtype == np.uint8
        for box, label in zip(out_boxes, out_labels):
            x1, y1, x2, y2 = np.round(box).astype(int)
            inner = out[y1 + 2 : y2 - 2, x1 + 2 : x2 - 2].reshape(-1, 3).astype(float)
            channel = 0 if label == 0 else 1
            assert inner[:, channel].mean() > 240 and inner[:, 2].mean() < 15
            seen += 1
    assert seen >= 20


def test_training_augments_and_evaluation_does_not(bccd_reader):
    train = DetectionDataset(bccd_reader, TrainTransform(224, augment=AugmentConfig(mosaic=0.5), seed=1))
    evaluation = DetectionDataset(bccd_reader, EvalTransform(224))
    a, b = evaluation[3], evaluation[3]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1]["boxes"], b[1]["boxes"])
    c, d = train[3], train[3]
    assert not torch.equal(c[0], d[0])
    for _, target in (c, d):
        boxes = target["boxes"]
        assert ((boxes >= 0) & (boxes <= 224)).all() and (boxes[:, 2:] > boxes[:, :2]).all()
    assert torch.isnan(c[1]["letterbox"]).all()
    orig = bccd_reader[3]
    np.testing.assert_allclose(
        boxes_to_original(a[1]["boxes"].numpy(), a[1]["letterbox"].numpy()), orig.boxes, atol=1e-3
    )


def test_close_mosaic_ends_the_mosaics_at_its_epoch(bccd_reader):
    """Mosaic 1.0 reads three other images per sample; from epoch ``mosaic_epochs`` on, a sample is its
    own image alone: one read, the same pixels and boxes as a run without Mosaic."""
    reads = []

    still = dict(scale=0.0, translate=0.0, hue=0.0, saturation=1.0, exposure=1.0, flip=0.0, min_visibility=0.0)
    transform = TrainTransform(224, "stretch", AugmentConfig(**still, mosaic=1.0), seed=0)
    dataset = DetectionDataset(CountingReader(bccd_reader, reads), transform, mosaic_epochs=2)
    plain = DetectionDataset(bccd_reader, TrainTransform(224, "stretch", AugmentConfig(**still), seed=0))
    for epoch in range(4):
        reads.clear()
        image, target = dataset[(epoch, 5)]
        if epoch < 2:
            assert len(reads) == 4  # its own and three others
            assert not torch.equal(image, plain[(epoch, 5)][0])
        else:
            assert reads == [5]
            expected_image, expected = plain[(epoch, 5)]
            assert torch.equal(image, expected_image)
            torch.testing.assert_close(target["boxes"], expected["boxes"])


def test_collate_keeps_ragged_targets(bccd_reader):
    dataset = DetectionDataset(bccd_reader, EvalTransform(160))
    images, targets = collate_detections([dataset[0], dataset[1]])
    assert images.shape == (2, 3, 160, 160) and images.dtype == torch.uint8
    assert [len(t["labels"]) for t in targets] == [len(bccd_reader.records[i].labels) for i in (0, 1)]
    assert targets[0]["orig_size"].tolist() == [480, 640]


def test_vertical_flip_mirrors_pixels_and_boxes():
    """``flip_vertical=1`` with every other augmentation off: the image upside down, each box mirrored
    about the horizontal midline (y1' = H - y2), labels unchanged."""
    image, boxes, labels = _rectangle_scene(np.random.default_rng(0))
    still = dict(scale=0.0, translate=0.0, hue=0.0, saturation=1.0, exposure=1.0, flip=0.0)
    plain = TrainTransform(256, "stretch", AugmentConfig(**still), seed=0)
    flipped = TrainTransform(256, "stretch", AugmentConfig(**still, flip_vertical=1.0), seed=0)
    a, a_boxes, a_labels = plain(image, boxes, labels)
    b, b_boxes, b_labels = flipped(image, boxes, labels)
    np.testing.assert_array_equal(b, a[::-1])
    np.testing.assert_allclose(b_boxes[:, [1, 3]], 256 - a_boxes[:, [3, 1]], atol=1e-3)
    np.testing.assert_allclose(b_boxes[:, [0, 2]], a_boxes[:, [0, 2]], atol=1e-3)
    assert b_labels.tolist() == a_labels.tolist() == labels.tolist()


def test_vertical_flip_is_checked():
    with pytest.raises(GridyoloError, match="augment.flip_vertical 1.5"):
        AugmentConfig(flip_vertical=1.5)
    with pytest.raises(GridyoloError, match="augment.close_mosaic -1"):
        AugmentConfig(close_mosaic=-1)
