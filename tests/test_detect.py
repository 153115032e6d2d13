"""gridyolo detect: folders (batched), the real video, TorchScript = checkpoint, bad sources."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from conftest import VIDEO
from gridyolo.apps.cli import main
from gridyolo.apps.detect import run_detect
from gridyolo.deploy.export import export_torchscript
from train_helpers import write_checkpoint

NAMES = [f"class{i}" for i in range(80)]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    ckpt = write_checkpoint(folder / "model.ckpt", NAMES, grid_size=7, input_size=224)
    script = folder / "model.torchscript"
    export_torchscript(str(ckpt), str(script))
    return ckpt, script


@pytest.fixture
def images(tmp_path, coco128_root):
    folder = tmp_path / "images"
    folder.mkdir()
    for path in sorted((coco128_root / "train2017").glob("*.jpg"))[:11]:
        shutil.copy(path, folder / path.name)
    return folder


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _assert_same_detections(record: dict, own: dict) -> None:
    """The same detections, in either order: a batch of 3 and a batch of 1 can differ in the 7th digit of a
    score (the CPU's kernels), which swaps two boxes of tied scores in the sorted output."""
    boxes, labels = np.asarray(record["boxes"]).reshape(-1, 4), record["labels"]
    scores = np.asarray(record["scores"])
    own_boxes, own_labels, own_scores = own["boxes"].numpy(), own["labels"].tolist(), own["scores"].numpy()
    assert len(labels) == len(own_labels)
    unmatched = list(range(len(own_labels)))
    for box, label, score in zip(boxes, labels, scores):
        match = [j for j in unmatched if own_labels[j] == label and np.allclose(box, own_boxes[j], atol=1e-3)
                 and abs(score - own_scores[j]) < 1e-4]  # fmt: skip
        assert match, (box, label, score)
        unmatched.remove(match[0])
    assert np.all(np.diff(scores) <= 1e-4)  # still sorted by score


def test_folder_batched_and_torchscript_gives_the_same_records(weights, images, tmp_path):
    ckpt, script = weights
    a = run_detect(
        str(ckpt), str(images), str(tmp_path / "a"), batch_size=4, save_json=True, progress=False, backend="torch"
    )  # fmt: skip  -- the CPU default (ONNX Runtime): test_ort_backend.py
    b = run_detect(str(script), str(images), str(tmp_path / "b"), batch_size=3, save_json=True, progress=False)
    assert a["images"] == b["images"] == 11
    assert len(list((tmp_path / "a").glob("*.jpg"))) == 11
    ra, rb = _records(tmp_path / "a" / "predictions.jsonl"), _records(tmp_path / "b" / "predictions.jsonl")
    assert [r["source"] for r in ra] == sorted(str(p) for p in images.glob("*.jpg"))
    assert sum(len(r["boxes"]) for r in ra) > 10
    # the TorchScript file detects exactly as its own forward (its torch resize), batched or not
    scripted = torch.jit.load(str(script))
    scripted.conf_threshold = b["conf_threshold"]
    for x, y in zip(ra, rb):
        image = torch.from_numpy(cv2.cvtColor(cv2.imread(y["source"]), cv2.COLOR_BGR2RGB)).permute(2, 0, 1)
        (own,) = scripted([image])
        assert y["frame"] is None
        _assert_same_detections(y, own)
        height, width = cv2.imread(x["source"]).shape[:2]
        boxes = np.asarray(x["boxes"]).reshape(-1, 4)
        assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= width).all() and (boxes[:, [1, 3]] <= height).all()
    assert set(a["ms_per_image"]) == {"read", "preprocess", "model", "decode_nms", "draw_write"}


def test_real_video_keeps_every_frame(weights, tmp_path):
    if not VIDEO.exists():
        pytest.skip(f"real video not found at {VIDEO}")
    ckpt, _ = weights
    result = run_detect(str(ckpt), str(VIDEO), str(tmp_path / "v"), batch_size=8, save_json=True, progress=False)
    source = cv2.VideoCapture(str(VIDEO))
    written = cv2.VideoCapture(result["video"])
    for prop in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT, cv2.CAP_PROP_FPS):
        assert written.get(prop) == pytest.approx(source.get(prop))
    assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == 795 == result["images"]
    records = _records(tmp_path / "v" / "predictions.jsonl")
    assert [r["frame"] for r in records] == list(range(795))
    assert result["warnings"] == []


def _write_video(path, frames=30, size=(96, 64)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    writer.release()
    return path


def test_truncated_video_keeps_what_was_decoded(weights, tmp_path):
    ckpt, _ = weights
    video = _write_video(tmp_path / "clip.avi")
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 2])  # the header still announces 30 frames
    result = run_detect(str(ckpt), str(video), str(tmp_path / "out"), save_json=True, progress=False)
    assert 0 < result["images"] < 30
    assert len(_records(tmp_path / "out" / "predictions.jsonl")) == result["images"]
    assert any("ended early" in w and f"of {result['expected_frames']} frames" in w for w in result["warnings"])


def test_folder_skips_unreadable_files_and_goes_on(weights, images, tmp_path, capsys):
    ckpt, _ = weights
    (images / "notes.txt").write_text("not an image")
    (images / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    code = main(["detect", "--weights", str(ckpt), "--source", str(images), "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 0
    assert f"{images / 'notes.txt'}" in err and f"{images / 'broken.jpg'}" in err and "Traceback" not in err
    assert len(list((tmp_path / "o").glob("*.jpg"))) == 11


@pytest.mark.parametrize(
    ("source", "message"),
    [("missing_dir/nothing.jpg", "missing_dir/nothing.jpg: source not found"),
     ("nothing_*.png", "nothing_*.png: no files match this pattern"),
     ("7", "webcam 7: cannot open (no camera at this index?)")],
)  # fmt: skip
def test_bad_sources_are_one_line_errors(weights, tmp_path, monkeypatch, capsys, source, message):
    monkeypatch.chdir(tmp_path)
    assert main(["detect", "--weights", str(weights[0]), "--source", source, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"gridyolo: error: {message}" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing created for a source that cannot be read


def test_runs_are_never_overwritten(weights, images, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = run_detect(str(weights[0]), str(images / "000000000009.jpg"), progress=False)
    second = run_detect(str(weights[0]), str(images / "000000000009.jpg"), progress=False)
    assert first["out"] == "runs/detect/exp" and second["out"] == "runs/detect/exp2"
    with pytest.raises(Exception, match="not empty"):
        run_detect(str(weights[0]), str(images / "000000000009.jpg"), first["out"], progress=False)
