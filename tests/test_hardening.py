"""Bad input of every kind is one clear line (exit 2), never a traceback, a hang or a silently wrong run."""

from __future__ import annotations

import json
import os
import signal
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from gridyolo.apps.cli import main
from gridyolo.data.readers import build_reader
from gridyolo.errors import DatasetError, one_line
from train_helpers import tiny_bccd, tiny_config, write_checkpoint

CLASSES = ["RBC", "WBC", "Platelets"]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("gridyolo"), err
    return lines[0]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("w") / "model.ckpt", CLASSES)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["detect", "--conf", "2"], "--conf: 2 is outside [0, 1]"),
        (["detect", "--conf", "-1"], "--conf: -1 is outside [0, 1]"),
        (["detect", "--conf", "nan"], "--conf: 'nan' is not a finite number"),
        (["detect", "--iou", "5"], "--iou: 5 is outside [0, 1]"),
        (["detect", "--img-size", "0"], "--img-size: 0 must be at least 1"),
        (["detect", "--img-size", "-64"], "--img-size: -64 must be at least 1"),
        (["detect", "--img-size", "31"], "--img-size 31: must be a multiple of the backbone's stride 32 (try 32)"),
        (["detect", "--img-size", "100"], "stride 32 (try 96 or 128)"),
        (["detect", "--batch", "0"], "--batch: 0 must be at least 1"),
        (["detect", "--max-frames", "-1"], "--max-frames: -1 must be at least 1"),
        (["detect", "--device", "cuda"], "--device cuda: CUDA is not available on this machine"),
        (["detect", "--device", "tpu"], "--device tpu: choose auto, cpu, cuda or cuda:N"),
        (["eval", "--max-det", "-1"], "--max-det: -1 must be at least 1"),
        (["eval", "--device", "cuda"], "--device cuda: CUDA is not available"),
        (["eval", "--batch", "x"], "--batch: 'x' is not an integer"),
        (["export", "--img-size", "31"], "--img-size 31: must be a multiple"),
        (["summary", "--grid", "0"], "--grid: 0 must be at least 1"),
        (["summary", "--boxes", "-1"], "--boxes: -1 must be at least 1"),
        (["summary", "--img-size", "31"], "--img-size 31: must be a multiple"),
        (["summary", "--backbone", "vgg"], "unknown backbone 'vgg'"),
    ],
)
def test_out_of_range_arguments_are_one_line(weights, bccd_root, tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same answer on a GPU machine
    monkeypatch.chdir(tmp_path)
    image = str(bccd_root / "JPEGImages" / "BloodImage_00000.jpg")
    command, *rest = argv
    needs = {
        "detect": ["--weights", str(weights), "--source", image, "--quiet"],
        "eval": ["--weights", str(weights), "--data", str(bccd_root), "--format", "voc", "--split", "test"],
        "export": ["--weights", str(weights), "--out", str(tmp_path / "m.torchscript")],
        "summary": [],
    }[command]
    assert main([command, *needs, *rest]) == 2
    assert message in _one_line(capsys)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "m.torchscript").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["--model.grid_size", "0"], 'Parser key "model.grid_size"'),
        (["--model.num_boxes", "-1"], 'Parser key "model.num_boxes"'),
        (["--data.batch_size", "0"], 'Parser key "data.batch_size"'),
        (["--data.input_size", "0"], 'Parser key "data.input_size"'),
        (["--data.input_size", "100"], "model.input_size 100: must be a multiple of the backbone's stride 32"),
        (["--model.lr", "-1"], 'Parser key "model.lr"'),
        (["--model.conf_threshold", "2"], 'Parser key "model.conf_threshold"'),
        (["--model.optimizer", "adam"], 'Parser key "model.optimizer"'),
        (["--data.augment.flip", "2"], 'Parser key "flip"'),
        (["--data.num_workers", "-1"], 'Parser key "data.num_workers"'),
    ],
)
def test_bad_training_values_are_one_line_and_leave_no_run(tmp_path, capsys, override, message):
    root = tiny_bccd(tmp_path / "bccd", count=2)
    config = tiny_config(tmp_path / "tiny.yaml", root, trainer__max_epochs=1)
    assert main(["train", "--config", str(config), "--project", str(tmp_path / "runs"), *override]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("gridyolo")]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err, err
    assert not (tmp_path / "runs" / "exp").exists()


def _coco(tmp_path: Path, data: object) -> Path:
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "train").mkdir(exist_ok=True)
    cv2.imwrite(str(root / "train" / "a.jpg"), np.zeros((20, 30, 3), np.uint8))
    text = data if isinstance(data, str) else json.dumps(data)
    (root / "annotations" / "instances_train.json").write_text(text)
    return root


IMAGE = {"id": 1, "file_name": "a.jpg", "width": 30, "height": 20}
CATEGORY = {"id": 1, "name": "thing"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"images": [IMAGE], "categories": [{"name": "x"}]}, "category #0"),
        ({"images": [IMAGE], "categories": [{"id": 1}]}, "category #0"),
        ({"images": [IMAGE], "categories": [CATEGORY], "annotations": [3]}, "annotation #0 is not an object"),
        ({"images": [{**IMAGE, "id": "1"}], "categories": [CATEGORY]}, "must be integers"),
        ({"images": [IMAGE], "categories": [CATEGORY],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [True, 0, 1, 1]}]}, "is not [x, y"),
        ({"images": [IMAGE], "categories": [CATEGORY],
          "annotations": [{"id": 1, "image_id": 1.5, "category_id": 1, "bbox": [0, 0, 1, 1]}]}, "image_id 1.5"),
        ({"images": [{**IMAGE, "width": 0}], "categories": [CATEGORY]}, "has size 0x20"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"images": [], "categories": []', "malformed JSON"),
    ],
)  # fmt: skip
def test_malformed_coco_is_one_dataset_error(tmp_path, data, message):
    root = _coco(tmp_path, data)
    with pytest.raises(DatasetError) as info:
        build_reader(str(root), "coco", "train")
    assert message in str(info.value) and "instances_train.json" in str(info.value)


def _voc(tmp_path: Path, size: str = "<width>30</width><height>20</height>") -> Path:
    root = tmp_path / "voc"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "JPEGImages" / "a.jpg"), np.zeros((20, 30, 3), np.uint8))
    (root / "Annotations" / "a.xml").write_text(
        f"<annotation><size>{size}</size><object><name>thing</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
        "<xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>"
    )
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\n")
    return root


def test_voc_odd_sizes_and_split_files(tmp_path):
    for size in ("<width>inf</width><height>inf</height>", "<width>nan</width><height>1e400</height>"):
        root = _voc(tmp_path, size)
        record = build_reader(str(root), "voc", "train", classes=["thing"]).records[0]
        assert (record.width, record.height) == (30, 20)  # taken from the image header, as for a missing size
    (root / "ImageSets" / "Main" / "train.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DatasetError, match="train.txt: not a UTF-8 text file"):
        build_reader(str(root), "voc", "train", classes=["thing"])


@pytest.fixture
def no_hang():
    """Fail instead of hanging when something waits on a pipe (a writer that never comes)."""

    def hung(signum, frame):
        raise TimeoutError("blocked on a named pipe")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_named_pipes_are_refused_not_waited_on(tmp_path, weights, capsys, no_hang):
    root = _coco(tmp_path, {"images": [IMAGE], "categories": [CATEGORY]})
    annotation = root / "annotations" / "instances_train.json"
    annotation.unlink()
    os.mkfifo(annotation)
    with pytest.raises(DatasetError, match="is a named pipe, not a regular annotation file"):
        build_reader(str(root), "coco", "train")
    video = tmp_path / "camera.mp4"
    os.mkfifo(video)
    assert main(["detect", "--weights", str(weights), "--source", str(video), "--out", str(tmp_path / "o")]) == 2
    assert "camera.mp4: is a named pipe, not a regular source" in _one_line(capsys)
    os.mkfifo(tmp_path / "weights.ckpt")
    assert main(["export", "--weights", str(tmp_path / "weights.ckpt")]) == 2
    assert "is a named pipe, not a regular weights file" in _one_line(capsys)
    yolo = tmp_path / "yolo"
    (yolo / "images").mkdir(parents=True)
    (yolo / "labels").mkdir()
    cv2.imwrite(str(yolo / "images" / "a.jpg"), np.zeros((20, 30, 3), np.uint8))
    os.mkfifo(yolo / "labels" / "a.txt")  # not "no label file": an unreadable one
    (yolo / "data.yaml").write_text("path: .\ntrain: images\nnames: [thing]\n")
    with pytest.raises(DatasetError, match="a.txt: is a named pipe"):
        build_reader(str(yolo / "data.yaml"), "yolo", "train")


def _png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that declares ``width x height`` RGB (what a decompression bomb's header says)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))  # fmt: skip
    return path


def test_images_above_the_pixel_limit_are_refused_before_decoding(tmp_path, weights, monkeypatch, capsys):
    from gridyolo.data.image_scan import check_images
    from gridyolo.data.images import load_image

    bomb = _png_header(tmp_path / "bomb.png", 16000, 16000)
    with pytest.raises(DatasetError, match=r"16000x16000 = 256,000,000 pixels is above the limit"):
        load_image(str(bomb))
    real = tmp_path / "real.png"
    cv2.imwrite(str(real), np.zeros((40, 50, 3), np.uint8))
    monkeypatch.setenv("GRIDYOLO_MAX_IMAGE_PIXELS", "1000")  # configurable: 50x40 is now too large
    with pytest.raises(DatasetError, match="2,000 pixels is above the limit of 1,000"):
        load_image(str(real))
    record = build_reader(str(_coco(tmp_path, {"images": [IMAGE], "categories": [CATEGORY]})), "coco").records[0]
    monkeypatch.setenv("GRIDYOLO_MAX_IMAGE_PIXELS", "100")
    assert [p.kind for p in check_images([record], "limit-test", use_cache=False)] == ["too_large"]
    monkeypatch.setenv("GRIDYOLO_MAX_IMAGE_PIXELS", "0")  # 0: no limit
    assert load_image(str(real)).shape == (40, 50, 3)
    monkeypatch.setenv("GRIDYOLO_MAX_IMAGE_PIXELS", "1000")
    out = tmp_path / "out"
    assert main(["detect", "--weights", str(weights), "--source", str(real), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "skipped" in err and "above the limit" in err and "Traceback" not in err


def test_a_dataloader_worker_error_is_the_same_one_line(tmp_path):
    from gridyolo.core.letterbox import EvalTransform
    from gridyolo.data.dataset import DetectionDataset, collate_detections

    reader = build_reader(str(tiny_bccd(tmp_path / "bccd", count=2)), "voc", "train", classes=CLASSES)
    os.remove(reader.records[1].file)  # gone after the annotations were read
    loader = DataLoader(DetectionDataset(reader, EvalTransform(64)), batch_size=1, num_workers=1,
                        collate_fn=collate_detections)  # fmt: skip
    with pytest.raises(DatasetError) as info:
        list(loader)
    assert "Original Traceback" in str(info.value)  # what torch re-raises
    assert one_line(info.value) == f"{reader.records[1].file}: image file not found"


def test_failed_image_writes_are_errors_and_captures_are_released(weights, bccd_root, tmp_path, monkeypatch, capsys):
    import gridyolo.apps.detect as detect

    image = str(bccd_root / "JPEGImages" / "BloodImage_00000.jpg")
    monkeypatch.setattr(detect.cv2, "imwrite", lambda *a, **k: False)  # a full disk, which cannot be made here
    assert main(["detect", "--weights", str(weights), "--source", image, "--out", str(tmp_path / "o"),
                 "--quiet"]) == 2  # fmt: skip
    assert "BloodImage_00000.jpg: could not write the image" in _one_line(capsys)
    monkeypatch.undo()

    released = []
    real_open = detect.open_capture

    def spy(source):
        capture = real_open(source)
        original = capture.release
        capture_release = lambda: (released.append(True), original())  # noqa: E731
        return type("Spy", (), {"release": staticmethod(capture_release), "get": capture.get,
                                "read": capture.read, "isOpened": capture.isOpened})()  # fmt: skip

    monkeypatch.setattr(detect, "open_capture", spy)
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    for _ in range(3):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    assert main(["detect", "--weights", str(bad), "--source", str(video), "--out", str(tmp_path / "v")]) == 2
    assert "damaged zip archive" in _one_line(capsys)
    assert released == [True]  # the capture opened before the weights failed was released
    assert not (tmp_path / "v").exists()


@pytest.mark.parametrize("command", ["eval", "export", "export-onnx", "detect", "explain", "convert", "train"])
def test_unwritable_outputs_are_one_line(weights, bccd_root, tmp_path, capsys, command):
    """An output under a regular file can never be created (as root too): one line naming it, exit 2."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    out = blocker / "sub" / "out"
    image = str(bccd_root / "JPEGImages" / "BloodImage_00000.jpg")
    data = str(tiny_bccd(tmp_path / "bccd", count=2))
    argv = {
        "eval": ["eval", "--weights", str(weights), "--data", data, "--format", "voc", "--split", "train",
                 "--save-json", f"{out}.json"],
        "export": ["export", "--weights", str(weights), "--out", f"{out}.torchscript"],
        "export-onnx": ["export", "--weights", str(weights), "--format", "onnx", "--out", f"{out}.onnx"],
        "detect": ["detect", "--weights", str(weights), "--source", image, "--out", str(out), "--quiet"],
        "explain": ["explain", "--weights", str(weights), "--image", image, "--out", str(out)],
        "convert": ["data", "convert", data, "--format", "voc", "--split", "train", "--to", "coco", "--out", str(out)],
        "train": ["train", "--config", str(tiny_config(tmp_path / "t.yaml", Path(data))), "--project", str(out)],
    }[command]  # fmt: skip
    assert main(argv) == 2
    line = _one_line(capsys)
    assert str(blocker) in line and ("Not a directory" in line or "cannot write" in line), line
