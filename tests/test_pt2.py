"""``gridyolo export --format pt2``: a torch.export program of the whole pipeline (and its AOTInductor
package), loaded safely, scored and detected on like every other export."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from gridyolo.apps.cli import main
from gridyolo.core.decode import decode_grid
from gridyolo.deploy.predictor import load_predictor
from gridyolo.deploy.pt2 import Pt2Model
from gridyolo.errors import GridyoloError
from gridyolo.weights_kind import weights_format
from train_helpers import write_checkpoint

NAMES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pt2")
    weights = write_checkpoint(folder / "model.ckpt", NAMES, grid_size=4, input_size=128)
    out = folder / "model.pt2"
    assert main(["export", "--weights", str(weights), "--format", "pt2", "--out", str(out), "--no-aoti"]) == 0
    return weights, out


@pytest.fixture(scope="module")
def batch(coco128_root):
    from gridyolo.core.letterbox import letterbox

    images = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
              for p in sorted((coco128_root / "train2017").glob("*.jpg"))[:3]]  # fmt: skip
    pairs = [letterbox(image, 128) for image in images]
    return (torch.from_numpy(np.stack([p[0] for p in pairs])).permute(0, 3, 1, 2).contiguous(),
            torch.from_numpy(np.stack([p[1] for p in pairs])),
            torch.tensor([image.shape[:2] for image in images], dtype=torch.float32))  # fmt: skip


def test_the_program_is_the_pipeline_and_equals_gridyolos_decode(exported, batch, capsys):
    weights, out = exported
    assert weights_format(str(out)) == "pt2"
    assert main(["export", "--info", str(out)]) == 0
    assert "program          pipeline" in capsys.readouterr().out
    model = Pt2Model(str(out))
    raw, boxes, scores, labels, image = model.run(*batch)
    eager = load_predictor(str(weights), backend="torch", channels_last=False)
    assert torch.allclose(raw, eager.predict_raw(batch[0]), atol=1e-4)
    conf, iou, max_det = model.exported_thresholds
    reference = decode_grid(raw, 2, (128, 128), batch[1], batch[2], conf, iou, max_det)
    assert len(scores) == sum(len(r["scores"]) for r in reference) > 10
    for i, ref in enumerate(reference):
        mine = image == i
        assert torch.equal(labels[mine], ref["labels"]) and torch.allclose(scores[mine], ref["scores"])
        assert (boxes[mine] - ref["boxes"]).abs().max() <= 1e-4


def test_images_with_no_or_one_detection_run_through_the_program(exported, batch, tmp_path):
    """torchvision registers NMS's output size as at least 2, which an exported graph asserts when it
    runs: the program must still take an image that keeps zero or one box."""
    from gridyolo.deploy.pt2 import export_pt2

    weights, out = exported
    raw = Pt2Model(str(out)).run(*batch)[0][:1].detach()
    top = decode_grid(raw, 2, (128, 128), batch[1][:1], batch[2][:1], 0.0, 0.45, 100)[0]["scores"]
    for conf, expected in ((0.999999, 0), (float(top[0] + top[1]) / 2, 1)):
        path = tmp_path / f"c{expected}.pt2"
        export_pt2(str(weights), str(path), conf_threshold=conf)
        _, boxes, scores, labels, image = Pt2Model(str(path)).run(batch[0][:1], batch[1][:1], batch[2][:1])
        assert len(scores) == expected and boxes.shape == (expected, 4)


def test_detect_and_eval_of_a_pt2_file_match_its_checkpoint(exported, coco128_root, tmp_path, capsys):
    weights, out = exported
    a = load_predictor(str(out), conf_threshold=0.05)
    b = load_predictor(str(weights), backend="torch", conf_threshold=0.05)
    assert a.info["format"] == "pt2" and a.info["backend"] == "torch" and a.class_names == NAMES
    image = torch.from_numpy(cv2.cvtColor(cv2.imread(str(next((coco128_root / "train2017").glob("*.jpg")))),
                                          cv2.COLOR_BGR2RGB)).permute(2, 0, 1)  # fmt: skip
    (mine,), (theirs,) = a([image]), b([image])
    assert torch.equal(mine["labels"], theirs["labels"]) and len(mine["labels"]) > 0
    assert (mine["boxes"] - theirs["boxes"]).abs().max() < 1e-2  # channels_last vs the exported graph: float noise
    with pytest.raises(GridyoloError, match="exported for 128 px input"):
        load_predictor(str(out), img_size=160)
    source = str(coco128_root / "train2017" / "000000000009.jpg")
    assert main(["detect", "--weights", str(out), "--source", source, "--out", str(tmp_path / "d"), "--quiet"]) == 0
    assert "(torch on cpu)" in capsys.readouterr().out


def test_an_archive_that_would_unpickle_is_refused_before_torch_reads_it(exported, tmp_path):
    _, out = exported
    marker = tmp_path / "ran"
    payload = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()

    def rewrite(dest: Path, change) -> Path:
        with zipfile.ZipFile(out) as src, zipfile.ZipFile(dest, "w") as dst:
            for info in src.infolist():
                data = change(info.filename, src.read(info.filename))
                if data is not None:
                    dst.writestr(info, data)
        return dest

    def pickled_weights(name, data):
        if name.endswith("data/weights/model_weights_config.json"):
            config = json.loads(data)
            first = next(iter(config["config"].values()))
            first["use_pickle"] = True
            return json.dumps(config).encode()
        return data

    cases = {
        "pickled": (rewrite(tmp_path / "p.pt2", pickled_weights), "pickled or custom-object payload"),
        "sample": (rewrite(tmp_path / "s.pt2", lambda n, d: payload if n.endswith("sample_inputs/model.pt") else d),
                   "is not weights-only data"),
        "legacy": (rewrite(tmp_path / "l.pt2", lambda n, d: payload if n.endswith("weights/weight_0") else d), None),
    }  # fmt: skip
    for name, (path, message) in cases.items():
        if message is None:  # raw tensor bytes are never unpickled: a garbled weight is a wrong model, not code
            continue
        with pytest.raises(GridyoloError, match=message):
            load_predictor(str(path))
        assert main(["detect", "--weights", str(path), "--source", str(tmp_path), "--out", str(tmp_path / name)]) == 2
    assert not marker.exists()


@pytest.mark.skipif(not any(shutil.which(c) for c in ("c++", "g++", "clang++")), reason="no C++ compiler")
def test_the_aoti_package_needs_trust_and_then_detects_as_the_program(exported, batch, tmp_path, capsys):
    weights, _ = exported
    out = tmp_path / "m.pt2"
    assert main(["export", "--weights", str(weights), "--format", "pt2", "--out", str(out)]) == 0
    package = tmp_path / "m.aoti.pt2"
    assert "wrote" in capsys.readouterr().out and weights_format(str(package)) == "aoti"
    with pytest.raises(GridyoloError, match="compiled machine code .* --trust-compiled"):
        load_predictor(str(package))
    compiled, program = Pt2Model(str(package), trust_compiled=True), Pt2Model(str(out))
    for x, y in zip(compiled.run(*batch), program.run(*batch), strict=True):
        assert x.shape == y.shape and torch.allclose(x.float(), y.float(), atol=1e-4)
    # an existing package is not overwritten
    assert main(["export", "--weights", str(weights), "--format", "pt2", "--out", str(out)]) == 2
