"""``gridyolo data check`` on the real data: the counts the core issue names."""

from __future__ import annotations

import json
import subprocess
import sys


def _check(*args):
    result = subprocess.run(
        [sys.executable, "-m", "gridyolo", "data", "check", *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_coco128_json(coco128_root):
    out = _check(str(coco128_root), "--format", "coco", "--split", "train2017", "--json")
    report = json.loads(out)  # exactly one JSON object on stdout
    assert report["images"] == 128 and report["boxes"] == 929
    assert sum(1 for n in report["classes"].values() if n) == 71 and len(report["classes"]) == 80
    assert report["dropped"] == []


def test_bccd_json(bccd_root):
    report = json.loads(_check(str(bccd_root), "--format", "voc", "--split", "trainval", "--json"))
    assert (report["images"], report["boxes"], len(report["dropped"])) == (292, 3941, 2)
    assert {d["file"].rsplit("/", 1)[-1] for d in report["dropped"]} == {"BloodImage_00338.xml", "BloodImage_00343.xml"}
    assert report["image_sizes"] == {"640x480": 292}


def test_bccd_text(bccd_root):
    out = _check(str(bccd_root), "--format", "voc", "--split", "trainval")
    assert "292" in out and "3941 kept" in out and "BloodImage_00338.xml" in out
