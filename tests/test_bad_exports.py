"""Exports off the happy path: ONNX files whose output does not match their metadata, and cache
entries that do not verify against the checkpoint they stand for."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
onnx = pytest.importorskip("onnx", reason="onnx is not installed")

from gridyolo.apps.cli import main  # noqa: E402
from gridyolo.deploy import ort_backend  # noqa: E402
from gridyolo.deploy.onnx_runner import OnnxDetector  # noqa: E402
from gridyolo.deploy.predictor import load_predictor  # noqa: E402
from gridyolo.errors import GridyoloError  # noqa: E402
from train_helpers import write_checkpoint  # noqa: E402

NAMES = ["cat", "dog", "bird"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("w")
    return [write_checkpoint(folder / f"model{seed}.ckpt", NAMES if seed == 0 else ["a", "b"], grid_size=7,
                             input_size=224, seed=seed) for seed in (0, 1)]  # fmt: skip


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDYOLO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def constant_model(path, output_shape, info) -> str:
    """An ONNX model with gridyolo's input and metadata whose output is a constant of ``output_shape``."""
    from onnx import TensorProto, helper, numpy_helper

    value = numpy_helper.from_array(np.zeros(output_shape, dtype=np.float32), "value")
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["raw"], value=value)],
        "g",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["N", 3, info["input_size"], info["input_size"]])],
        [helper.make_tensor_value_info("raw", TensorProto.FLOAT, list(output_shape))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"gridyolo.json": json.dumps(info)})
    onnx.save(model, str(path))
    return str(path)


INFO = {"input_size": 64, "grid_size": 2, "num_boxes": 1, "class_names": ["a", "b"], "resize_mode": "letterbox"}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.lists(st.integers(1, 8), min_size=1, max_size=5))
@example(shape=[1, 2, 2, 7])  # the layout of the metadata: decodes
@example(shape=[2, 2, 2, 7])  # the layout, but two grids for one image
def test_an_onnx_output_that_does_not_match_its_metadata_is_one_clear_error(tmp_path, shape):
    path = constant_model(tmp_path / "m.onnx", shape, INFO)
    image = np.zeros((40, 50, 3), dtype=np.uint8)
    if shape == [1, 2, 2, 7]:  # [N, S, S, B*5 + C] for one image: decodes (nothing scores above 0.25)
        assert OnnxDetector(path)([image])[0]["boxes"].shape == (0, 4)
        assert load_predictor(path)([image])[0]["boxes"].shape == (0, 4)
        return
    if shape[1:] == [2, 2, 7] and len(shape) == 4:  # a constant batch of another size: refused when run
        with pytest.raises(GridyoloError, match=f"{shape[0]} grid\\(s\\) for a batch of 1 image"):
            OnnxDetector(path)([image])
        return
    with pytest.raises(GridyoloError, match="does not match its metadata"):
        OnnxDetector(path)
    with pytest.raises(GridyoloError, match="does not match its metadata"):
        load_predictor(path)


def test_a_dynamic_output_shape_is_checked_when_it_runs(tmp_path):
    path = constant_model(tmp_path / "m.onnx", [1, 3, 3, 7], INFO)
    model = onnx.load(path)  # the graph says nothing about its output's size; the run does
    for dim in model.graph.output[0].type.tensor_type.shape.dim:
        dim.dim_param = "d"
    onnx.save(model, path)
    image = np.zeros((40, 50, 3), dtype=np.uint8)
    with pytest.raises(GridyoloError, match=r"output shape \[1, 3, 3, 7\] does not match"):
        OnnxDetector(path)([image])
    with pytest.raises(GridyoloError, match=r"output shape \[1, 3, 3, 7\] does not match"):
        load_predictor(path).predict([image])


@pytest.mark.parametrize("metadata", ["{not json", "[1, 2]", json.dumps({**INFO, "grid_size": "2"}),
                                      json.dumps({**INFO, "class_names": []}), "[" * 100_000 + "]" * 100_000])
def test_malformed_metadata_is_one_clear_error(tmp_path, metadata):
    path = constant_model(tmp_path / "m.onnx", [1, 2, 2, 7], INFO)
    model = onnx.load(path)
    model.metadata_props[0].value = metadata
    onnx.save(model, path)
    for open_ in (OnnxDetector, load_predictor):
        with pytest.raises(GridyoloError, match="gridyolo metadata"):
            open_(path)


def test_detect_and_eval_refuse_such_a_file_in_one_line(tmp_path, capsys, coco128_root):
    path = constant_model(tmp_path / "m.onnx", [1, 3, 2, 7], INFO)
    for argv in (["detect", "--weights", path, "--source", str(coco128_root / "train2017"), "--out",
                  str(tmp_path / "out"), "--quiet"],
                 ["eval", "--weights", path, "--data", str(coco128_root), "--format", "coco"]):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"gridyolo: error: {path}: the model's output shape" in err and "Traceback" not in err


def _entry(cache):
    (path,) = (cache / "onnx").glob("*.onnx")
    return path


def test_a_different_model_under_a_checkpoints_cache_name_is_not_run(checkpoints, cache):
    ours, theirs = checkpoints
    expected = load_predictor(str(ours)).predict_raw(torch.zeros(1, 3, 224, 224, dtype=torch.uint8))
    entry = _entry(cache)
    load_predictor(str(theirs))  # its own entry: a valid gridyolo export of another model
    other = next(p for p in (cache / "onnx").glob("*.onnx") if p != entry)
    shutil.copyfile(other, entry)  # placed under our checkpoint's name
    predictor = load_predictor(str(ours))
    assert predictor.class_names == NAMES and predictor.info["backend"] == "onnxruntime"
    assert any("cached export ignored" in note and "replaced or truncated" in note for note in predictor.info["notes"])
    assert torch.equal(predictor.predict_raw(torch.zeros(1, 3, 224, 224, dtype=torch.uint8)), expected)
    assert load_predictor(str(ours)).info["notes"] == []  # repaired: the next run trusts it again


def test_a_truncated_cache_entry_is_rebuilt_not_fallen_back_from_forever(checkpoints, cache):
    ours = checkpoints[0]
    load_predictor(str(ours))
    entry = _entry(cache)
    entry.write_bytes(entry.read_bytes()[:1000])
    first = load_predictor(str(ours))
    assert first.info["backend"] == "onnxruntime" and "cached export ignored" in first.info["notes"][0]
    second = load_predictor(str(ours))
    assert second.info["backend"] == "onnxruntime" and second.info["notes"] == []


@pytest.mark.parametrize("record", ["{broken", "[]", json.dumps({"reason": 3}), "[" * 100_000])
def test_a_corrupt_rejection_record_is_ignored_with_one_line(checkpoints, cache, record):
    ours = checkpoints[0]
    load_predictor(str(ours))
    entry = _entry(cache)
    entry.unlink()
    entry.with_suffix(".rejected.json").write_text(record)
    predictor = load_predictor(str(ours))
    assert predictor.info["backend"] == "onnxruntime"
    assert "unreadable or of another checkpoint; ignored, exported again" in predictor.info["notes"][0]


def test_a_missing_or_foreign_record_does_not_verify(checkpoints, cache):
    ours = checkpoints[0]
    load_predictor(str(ours))
    entry = _entry(cache)
    record = entry.with_suffix(".json")
    saved = json.loads(record.read_text())
    record.unlink()
    assert "no readable record" in load_predictor(str(ours)).info["notes"][0]
    record.write_text(json.dumps({**saved, "checkpoint_sha256": "0" * 64}))
    assert "names another checkpoint" in load_predictor(str(ours)).info["notes"][0]
    assert ort_backend.verified_entry(entry, saved["checkpoint_sha256"]) is None  # rewritten when re-exported
