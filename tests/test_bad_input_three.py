"""Bad input, round three: predictions files, thresholds, sizes and lists on the newer paths."""

from __future__ import annotations

import json
import math
import os
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import write_yolo_copy
from gridyolo.apps.cli import main
from gridyolo.data.sample import ImageRecord
from gridyolo.evaluation.voc_ap import best_f1_threshold, threshold_text


def test_deeply_nested_predictions_json_is_called_what_it_is(coco128_root, tmp_path, capsys):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)  # valid JSON, deeper than the parser goes
    assert main(["eval", "--data", str(coco128_root), "--format", "coco", "--predictions", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nested too deeply" in err and "UTF-8" not in err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_in_a_predictions_folder_is_skipped_not_read(coco128_root, tmp_path, capsys):
    yaml_path = write_yolo_copy(coco128_root, tmp_path / "yolo", limit=3)
    stems = sorted(p.stem for p in (tmp_path / "yolo" / "images" / "train").iterdir())
    preds = tmp_path / "preds"
    preds.mkdir()
    (preds / f"{stems[0]}.txt").write_text("0 0.5 0.5 0.2 0.2 0.9\n")
    os.mkfifo(preds / f"{stems[1]}.txt")  # nobody writes to it: opening it would wait forever
    (preds / "folder.txt").mkdir()
    result: dict = {}
    args = ["eval", "--predictions", str(preds), "--data", str(yaml_path), "--format", "yolo", "--split", "val"]
    worker = threading.Thread(target=lambda: result.update(code=main(args)), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "eval hangs on a named pipe"
    out = capsys.readouterr()
    assert result["code"] == 0 and "2 .txt entries are not a regular file" in out.err


def _one_image(scores: list[float]) -> tuple[list[ImageRecord], dict]:
    record = ImageRecord("a.jpg", 0, 100, 100, np.array([[10, 10, 50, 50]], dtype=np.float32), np.zeros(1, np.int64))
    boxes = np.tile(np.array([[10, 10, 50, 50]], dtype=np.float32), (len(scores), 1))
    boxes[1:] += 60  # only the first detection matches the object
    return [record], {0: {"boxes": boxes, "scores": np.asarray(scores, dtype=np.float32),
                          "labels": np.zeros(len(scores), np.int64)}}  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(score=st.floats(1e-6, 1.0, allow_nan=False), others=st.lists(st.floats(0, 1), max_size=4))
def test_the_f1_threshold_keeps_the_detection_that_defines_it(score, others):
    records, detections = _one_image([score, *[o * score for o in others]])
    threshold, _ = best_f1_threshold(records, detections, 1)
    kept = detections[0]["scores"] >= threshold
    assert kept[0]  # the true positive it was chosen for
    shown = float(threshold_text(threshold))
    assert shown <= threshold and (threshold - shown) <= 1e-3 * threshold + 1e-12


def test_threshold_text_rounds_down():
    assert threshold_text(0.123456) == "0.1234" and threshold_text(0.99999) == "0.9999"
    assert threshold_text(0.25) == "0.25" and threshold_text(1.0) == "1" and threshold_text(0.0) == "0"
    assert float(threshold_text(math.nextafter(0.5, 0))) < 0.5


def test_the_stored_f1_threshold_is_not_rounded_above_its_detection(coco128_root):
    from gridyolo.data.readers import build_reader
    from gridyolo.evaluation.scoring import score_detections

    reader = build_reader(str(coco128_root), "coco", "train2017")
    # every object found exactly, the weakest at a score that 4-digit rounding moves up (0.1235 > 0.123456789)
    predictions = {r.image_id: {"boxes": r.boxes, "scores": np.full(len(r.boxes), 0.9, np.float32),
                                "labels": r.labels} for r in reader.records}  # fmt: skip
    weakest = next(i for i, p in predictions.items() if len(p["scores"]))
    predictions[weakest]["scores"] = np.full(len(predictions[weakest]["scores"]), 0.123456789, np.float32)
    metrics = score_detections(reader, predictions)
    assert metrics["f1_threshold"] <= float(np.float32(0.123456789))  # all kept: F1 1.0 at this threshold
    assert metrics["f1"] == pytest.approx(1.0)


# -- data convert: everything checked before the first file, and no half-written root read as whole --
def _small_voc(tmp_path, bccd_root, count=6):
    from train_helpers import tiny_bccd

    return tiny_bccd(tmp_path / "voc", count=count)


def _files(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_convert_refuses_an_output_inside_the_source(bccd_root, tmp_path, capsys):
    root = _small_voc(tmp_path, bccd_root)
    before = _files(root)
    for out in (root / "as_yolo", root / "JPEGImages" / "coco"):
        code = main(["data", "convert", str(root), "--format", "voc", "--split", "train", "--to", "yolo",
                     "--out", str(out), "--classes", "RBC,WBC,Platelets"])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2 and "inside the source dataset" in err, err
    assert _files(root) == before  # nothing written


def test_convert_refuses_before_writing_anything(bccd_root, tmp_path, capsys):
    from gridyolo.data.convert import convert_dataset
    from gridyolo.data.readers import build_reader
    from gridyolo.errors import GridyoloError

    reader = build_reader(str(_small_voc(tmp_path, bccd_root)), "voc", "train", classes=["RBC", "WBC", "Platelets"])
    out = tmp_path / "out"
    out.mkdir()
    (out / "data.yaml").write_text("names: {0: cat, 1: dog}\n")
    with pytest.raises(GridyoloError, match="class names differ"):
        convert_dataset(reader, "yolo", str(out), "train", exist_ok=True)
    assert _files(out) == ["data.yaml"]  # no image or label was written before the refusal
    coco = tmp_path / "coco"
    (coco / "annotations").mkdir(parents=True)
    (coco / "annotations" / "instances_val.json").write_text(json.dumps({"categories": [{"id": 1, "name": "cat"}]}))
    with pytest.raises(GridyoloError, match="categories differ"):
        convert_dataset(reader, "coco", str(coco), "train", exist_ok=True)
    assert _files(coco) == ["annotations", "annotations/instances_val.json"]


def test_an_interrupted_convert_is_refused_by_every_reader(bccd_root, tmp_path, monkeypatch, capsys):
    from gridyolo.data import convert
    from gridyolo.data.readers import build_reader
    from gridyolo.errors import DatasetError

    reader = build_reader(str(_small_voc(tmp_path, bccd_root)), "voc", "train", classes=["RBC", "WBC", "Platelets"])
    placed = []
    real_place = convert._place_image

    def stop_after_two(src, dest, mode):  # Ctrl-C (or SIGTERM, or a full disk) in the middle
        if len(placed) == 2:
            raise KeyboardInterrupt
        placed.append(dest)
        real_place(src, dest, mode)

    monkeypatch.setattr(convert, "_place_image", stop_after_two)
    for to, read_as in (("yolo", lambda out: (str(out / "data.yaml"), "yolo", "train")),
                        ("voc", lambda out: (str(out), "voc", "train")),
                        ("coco", lambda out: (str(out), "coco", "train"))):  # fmt: skip
        placed.clear()
        out = tmp_path / f"half_{to}"
        with pytest.raises(KeyboardInterrupt):
            convert.convert_dataset(reader, to, str(out), "train")
        root, fmt, split = read_as(out)
        if to != "coco":  # coco writes its json last: there is nothing to misread, and still a marker
            with pytest.raises(DatasetError, match="interrupted 'gridyolo data convert'"):
                build_reader(root, fmt, split, classes=["RBC", "WBC", "Platelets"])
        assert (out / ".gridyolo-incomplete").is_file()
        assert main(["data", "check", root, "--format", fmt, "--split", split]) == 2
        assert "left this folder incomplete" in capsys.readouterr().err
        monkeypatch.setattr(convert, "_place_image", real_place)
        convert.convert_dataset(reader, to, str(out), "train", exist_ok=True)  # finishing it clears the mark
        assert len(build_reader(root, fmt, split, classes=["RBC", "WBC", "Platelets"])) == len(reader)
        monkeypatch.setattr(convert, "_place_image", stop_after_two)


# -- resume: only the run's controls may change --
def _train(tmp_path, config, name, *extra):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "gridyolo", "train", "--config", str(config), "--project",
                           str(tmp_path / "runs"), "--name", name, *extra], capture_output=True, text=True,
                          timeout=600)  # fmt: skip


def test_resume_refuses_other_model_or_data_settings(bccd_root, tmp_path, capsys):
    from train_helpers import tiny_bccd, tiny_config

    config = tiny_config(tmp_path / "tiny.yaml", tiny_bccd(tmp_path / "voc", count=6), trainer__max_epochs=1)
    base = ["train", "--config", str(config), "--project", str(tmp_path / "runs")]
    assert main([*base, "--name", "first"]) == 0
    last = str(tmp_path / "runs" / "first" / "weights" / "last.ckpt")
    capsys.readouterr()
    for extra, named in ((["--model.grid_size", "8"], "model.grid_size 4 -> 8"),
                         (["--model.backbone", "resnet18"], "model.backbone darknet_tiny -> resnet18"),
                         (["--data.input_size", "160"], "data.input_size 128 -> 160")):  # fmt: skip
        assert main([*base, "--name", "again", "--resume", last, "--trainer.max_epochs", "2", *extra]) == 2
        err = capsys.readouterr().err
        assert named in err and "Traceback" not in err and sum("gridyolo: error" in x for x in err.splitlines()) == 1
        assert not (tmp_path / "runs" / "again").exists()  # a refused run leaves no folder
    # the run's controls and the safe keys may change
    assert main([*base, "--name", "again", "--resume", last, "--trainer.max_epochs", "2", "--data.num_workers", "0",
                 "--model.conf_threshold", "0.01"]) == 0  # fmt: skip


def test_ctrl_c_before_a_resumed_runs_first_epoch_points_at_the_checkpoint_it_resumed_from(tmp_path, capsys):
    from gridyolo.training.callbacks import RunStatus

    first = tmp_path / "first"
    (first / "weights").mkdir(parents=True)
    (first / "config.yaml").write_text("model: {}\n")
    resumed_from = first / "weights" / "last.ckpt"
    resumed_from.write_bytes(b"a checkpoint")
    status = RunStatus(tmp_path / "again", str(resumed_from), resumed_epochs=3)
    status.on_exception(None, None, KeyboardInterrupt())
    written = json.loads((tmp_path / "again" / "status.json").read_text())
    resume = f"gridyolo train --config {first / 'config.yaml'} --resume {resumed_from}"
    assert written == {"status": "interrupted", "epochs_saved": 3, "reason": "KeyboardInterrupt",
                       "last_checkpoint": str(resumed_from), "resume": resume}  # fmt: skip
    err = capsys.readouterr().err
    assert "nothing to resume" not in err and f"{resumed_from}, which it resumed from, is intact" in err
    assert resume in err


# -- what decodes is not what is whole --
def test_a_jpeg_with_damaged_bytes_inside_is_reported_as_suspect(bccd_root, tmp_path, capsys):
    import cv2

    from gridyolo.data.image_scan import inspect_image, jpeg_structure_problem
    from train_helpers import tiny_bccd

    root = tiny_bccd(tmp_path / "voc", count=4)
    victim = sorted((root / "JPEGImages").iterdir())[0]
    data = bytearray(victim.read_bytes())
    victim.unlink()  # a symlink to the shared data: write a damaged copy instead
    middle = len(data) // 2
    data[middle : middle + 2000] = np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    victim.write_bytes(bytes(data))
    image = cv2.imread(str(victim))
    assert image is not None and image.shape[:2] == (480, 640)  # decodes, at its full size, end marker intact
    assert inspect_image(str(victim))[2] == "suspect"
    assert main(["data", "check", str(root), "--format", "voc", "--split", "train", "--classes",
                 "RBC,WBC,Platelets"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert f"{victim}: suspect: damaged image data" in out
    # sound JPEGs of every kind the writers make are not suspect
    picture = cv2.imread(str(sorted(bccd_root.glob("JPEGImages/*.jpg"))[0]))
    for flags in ([], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], [cv2.IMWRITE_JPEG_RST_INTERVAL, 4],
                  [cv2.IMWRITE_JPEG_OPTIMIZE, 1, cv2.IMWRITE_JPEG_QUALITY, 30]):  # fmt: skip
        ok, encoded = cv2.imencode(".jpg", picture, flags)
        assert ok and jpeg_structure_problem(encoded.tobytes()) == "", flags
    for path in [*bccd_root.glob("JPEGImages/*.jpg")][:100]:
        assert jpeg_structure_problem(path.read_bytes()) == "", path


# -- sizes: bounded where they enter; list checks linear --
BIG = [["summary", "--img-size", "100000"], ["summary", "--img-size", "4097"],
       ["detect", "--weights", "w.ckpt", "--source", "x", "--batch", "10000000"]]


@pytest.mark.parametrize("argv", BIG)
def test_sizes_from_arguments_are_bounded_before_anything_is_allocated(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and ("4096" in err or "1024" in err), err


def test_a_training_input_size_above_the_bound_is_one_line(bccd_root, tmp_path):
    from train_helpers import tiny_bccd, tiny_config

    config = tiny_config(tmp_path / "tiny.yaml", tiny_bccd(tmp_path / "voc", count=2))
    done = _train(tmp_path, config, "big", "--data.input_size", "100000")
    assert done.returncode == 2 and "at most 4096 px" in done.stderr and "Traceback" not in done.stderr


def test_a_100k_line_class_list_is_checked_in_linear_time(tmp_path):
    import time

    from gridyolo.data.classes import parse_class_list
    from gridyolo.errors import DatasetError

    path = tmp_path / "names.txt"
    path.write_text("".join(f"class{i}\n" for i in range(100_000)))
    start = time.process_time()
    assert len(parse_class_list(str(path))) == 100_000
    path.write_text("".join(f"class{i}\n" for i in range(100_000)) + "class7\n")
    with pytest.raises(DatasetError, match="class7 appear"):
        parse_class_list(str(path))
    assert time.process_time() - start < 5  # quadratic: minutes


# -- a Ctrl-C is never lost --
def test_a_ctrl_c_is_raised_at_the_next_batch_and_a_second_one_at_once():
    import signal

    from gridyolo.training.interrupts import CtrlC

    # Python's own handler, as in a terminal (a suite started as a background job inherits SIGINT ignored,
    # and CtrlC rightly keeps that: the next test covers it)
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    ctrl_c = CtrlC()
    ctrl_c.install()
    try:
        assert signal.getsignal(signal.SIGINT) == ctrl_c._handler
        try:  # a library that clears whatever is raised while it runs: nothing is raised inside it now
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
        except BaseException:  # noqa: BLE001 - the swallowing this guards against
            pytest.fail("the first Ctrl-C raised inside arbitrary code")
        assert ctrl_c.requested
        with pytest.raises(KeyboardInterrupt):
            ctrl_c.on_train_batch_start(None, None, None, 0)
        with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C does not wait for a boundary
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass
        ctrl_c.on_exception(None, None, KeyboardInterrupt())  # Lightning handled it: no more raising
        ctrl_c.on_train_batch_start(None, None, None, 0)
    finally:
        ctrl_c.restore()
        restored = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, inherited)
    assert restored is signal.default_int_handler


def test_a_background_job_that_ignores_sigint_keeps_ignoring_it():
    import signal

    from gridyolo.training.interrupts import CtrlC

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ctrl_c = CtrlC()
        ctrl_c.install()
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        ctrl_c.restore()
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_refused_training_run_leaves_no_project_folder(tmp_path):
    project = tmp_path / "new" / "project"
    done = subprocess_train(["--config", "configs/custom_cpu.yaml", "--data.root", str(tmp_path / "missing"),
                             "--project", str(project)])  # fmt: skip
    assert done.returncode == 2 and "dataset root does not exist" in done.stderr
    assert not (tmp_path / "new").exists()


def subprocess_train(args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "gridyolo", "train", *args], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
