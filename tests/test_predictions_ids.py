"""Predictions from other tools name their images and classes without guessing gridyolo's ids: by
file name or stem, by numeric stems (Ultralytics), refused when ambiguous; a class order that is not
the dataset's is an error, not mAP 0."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from gridyolo.apps.evaluate import evaluate_predictions_file
from gridyolo.errors import GridyoloError

# three images, two classes, four objects; the results hold exactly their boxes
OBJECTS = [[(10, 10, 60, 50, "cat")], [(20, 30, 90, 80, "dog"), (5, 5, 30, 30, "cat")], [(40, 40, 95, 95, "dog")]]


def _voc(root: Path, stems: list[str]) -> Path:
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for stem, objects in zip(stems, OBJECTS):
        cv2.imwrite(str(root / "JPEGImages" / f"{stem}.jpg"), np.full((100, 100, 3), 90, np.uint8))
        xml = "".join(f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
                      f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>" for a, b, c, d, n in objects)  # fmt: skip
        (root / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><size><width>100</width><height>100</height></size>{xml}</annotation>"
        )
    (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join(stems) + "\n")
    return root


def _results(path: Path, name_of, category_of=lambda n: {"cat": 1, "dog": 2}[n]) -> Path:
    """A COCO results list of the exact boxes; ``name_of(position, stem)`` gives each entry's image key."""
    rows = []
    for position, objects in enumerate(OBJECTS):
        for a, b, c, d, n in objects:
            rows.append({**name_of(position), "category_id": category_of(n), "bbox": [a, b, c - a, d - b],
                         "score": 0.9})  # fmt: skip
    path.write_text(json.dumps(rows))
    return path


def _map(path: Path, root: Path) -> dict:
    return evaluate_predictions_file(str(path), str(root), "voc", "train")


def test_images_named_by_file_name_stem_or_position_score_the_same(tmp_path):
    stems = ["cat_a", "mixed_b", "dog_c"]
    root = _voc(tmp_path / "voc", stems)
    by_position = _map(_results(tmp_path / "p.json", lambda i: {"image_id": i}), root)
    assert by_position["map"] == pytest.approx(1.0)
    for key, name in (("file_name", lambda i: f"{stems[i]}.jpg"), ("image_id", lambda i: stems[i]),
                      ("file_name", lambda i: f"JPEGImages/{stems[i]}.jpg")):  # fmt: skip
        metrics = _map(_results(tmp_path / "n.json", lambda i, k=key, f=name: {k: f(i)}), root)
        assert metrics["map"] == by_position["map"] and metrics["detections"] == 4
    # the class order assumed is printed with the results
    assert any("0 cat, 1 dog" in note for note in by_position["notes"])
    # ids counted from 1 (a common guess) are refused with the scheme, not scored against the wrong images
    with pytest.raises(GridyoloError, match=r"image_id 3 is not an image .* positions 0..2 in the split"):
        _map(_results(tmp_path / "one.json", lambda i: {"image_id": i + 1}), root)
    with pytest.raises(GridyoloError, match="'nope.jpg' matches no image"):
        _map(_results(tmp_path / "x.json", lambda i: {"file_name": "nope.jpg"}), root)


def test_numeric_stems_are_read_as_stems_when_only_they_fit_and_refused_when_ambiguous(tmp_path):
    root = _voc(tmp_path / "voc", ["0010", "0011", "0012"])  # positions 0..2, stems 10..12
    metrics = _map(_results(tmp_path / "u.json", lambda i: {"image_id": 10 + i}), root)  # as Ultralytics numbers
    assert metrics["map"] == pytest.approx(1.0) and any("numeric file stems" in n for n in metrics["notes"])
    ambiguous = _voc(tmp_path / "amb", ["1", "2", "0"])  # position 0 is stem 1: either reading fits every id
    with pytest.raises(GridyoloError, match="ambiguous"):
        _map(_results(tmp_path / "a.json", lambda i: {"image_id": i}), ambiguous)
    assert _map(_results(tmp_path / "f.json", lambda i: {"file_name": ["1", "2", "0"][i]}), ambiguous)["map"] == 1.0


def test_a_class_order_that_is_not_the_datasets_is_an_error_not_map_zero(tmp_path):
    root = _voc(tmp_path / "voc", ["a", "b", "c"])
    swapped = _results(tmp_path / "s.json", lambda i: {"image_id": i}, lambda n: {"cat": 2, "dog": 1}[n])
    with pytest.raises(GridyoloError, match="not in the dataset's order"):
        _map(swapped, root)
    # YOLO txt predictions in another order: the same refusal; --classes in their order scores them
    folder = tmp_path / "txt"
    folder.mkdir()
    for stem, objects in zip("abc", OBJECTS):
        lines = [f"{1 if n == 'cat' else 0} {(a + c) / 200} {(b + d) / 200} {(c - a) / 100} {(d - b) / 100} 0.9"
                 for a, b, c, d, n in objects]  # fmt: skip
        (folder / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(GridyoloError, match="pass --classes in the order of the predictions"):
        evaluate_predictions_file(str(folder), str(root), "voc", "train")
    metrics = evaluate_predictions_file(str(folder), str(root), "voc", "train", classes=["dog", "cat"])
    assert metrics["map"] == pytest.approx(1.0) and any("0 dog, 1 cat" in n for n in metrics["notes"])
