"""Decode every image of a dataset once and say which ones would break training.

Findings, per file: ``unreadable`` (missing, or no permission), ``truncated`` (a JPEG without its end
marker or a PNG without its IEND chunk: OpenCV 5 refuses them, OpenCV 4 decodes them with a grey
tail, silently), ``corrupt`` (the decoder gives up on a complete file), ``size_mismatch`` (the decoded
size differs from the annotated one), ``too_large`` (above the pixel limit,
``input_guards.max_image_pixels``). Each of them stops training before its first step. ``suspect``: a JPEG
that decodes but whose marker structure shows damaged bytes inside its image data (libjpeg only warns,
and fills the rest with grey); reported, and training warns.

Results are cached per image, keyed by path, size and mtime, so a second check of a large dataset
only stats its files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from gridyolo.data.images import header_size
from gridyolo.data.sample import ImageRecord
from gridyolo.errors import DatasetError
from gridyolo.files import cache_dir, write_json
from gridyolo.input_guards import check_image_pixels, require_regular_file

FATAL = ("unreadable", "truncated", "corrupt", "size_mismatch", "too_large")
_CACHE_VERSION = 2  # 2: suspect JPEGs


@dataclass(frozen=True)
class ImageProblem:
    file: str
    kind: str  # FATAL kinds, or suspect
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


def inspect_image(path: str) -> tuple[int, int, str, str]:
    """``(width, height, kind, detail)`` of one image file; ``kind`` is ``""`` when it decodes cleanly."""
    try:
        require_regular_file(path, "image file", DatasetError)
        size = header_size(path)
        if size is not None:
            check_image_pixels(*size, path)
        with open(path, "rb") as f:
            data = f.read()
    except DatasetError as exc:
        width, height = size or (0, 0)
        kind = "too_large" if width * height else "unreadable"
        return width, height, kind, str(exc).split(": ", 1)[-1]
    except OSError as exc:
        return 0, 0, "unreadable", exc.strerror or exc.__class__.__name__
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    height, width = image.shape[:2] if image is not None else (0, 0)
    end = data.rstrip(b"\x00\r\n ")[-12:]  # some writers pad after the end marker
    if data[:2] == b"\xff\xd8" and not end.endswith(b"\xff\xd9"):
        return width, height, "truncated", "JPEG without its end marker (the file was cut short)"
    if data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in end:
        return width, height, "truncated", "PNG without its IEND chunk (the file was cut short)"
    if image is None:
        return 0, 0, "corrupt", "cannot be decoded" if data else "empty file"
    if data[:2] == b"\xff\xd8" and (problem := jpeg_structure_problem(data)):
        return width, height, "suspect", f"{problem}; it decodes, but part of it is probably grey"
    return width, height, "", ""


# markers that may follow a scan's entropy-coded data: the next table, scan or the end (progressive and
# multi-scan JPEGs); anything else there means bytes inside the image data were damaged
_AFTER_SCAN = frozenset({0xC4, 0xCC, 0xD9, 0xDA, 0xDB, 0xDC, 0xDD, 0xFE, *range(0xE0, 0xF0)})


def jpeg_structure_problem(data: bytes) -> str:
    """What is wrong with a JPEG's marker structure (``""``: nothing). Damaged bytes inside the image data
    usually show as a marker that cannot be there; libjpeg then only warns and fills the rest of the
    image with grey, so a file that decodes, at its full size, can still be half an image."""
    size, pos = len(data), 2
    while pos < size:
        if data[pos] != 0xFF:
            return f"damaged image data: bytes where a marker belongs (offset {pos})"
        while pos < size and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= size:
            break
        code, pos = data[pos], pos + 1
        if code == 0xD9:
            return ""
        if 0xD0 <= code <= 0xD7 or code == 0x01:  # stand-alone markers
            continue
        if pos + 2 > size:
            break
        end = pos + int.from_bytes(data[pos : pos + 2], "big")
        if end <= pos + 1 or end > size:
            return f"damaged image data: a segment length that does not fit the file (offset {pos})"
        pos = end
        if code == 0xDA:  # a scan: entropy-coded bytes up to the next marker that is not RSTn or stuffing
            scan = np.frombuffer(data, dtype=np.uint8, offset=pos)
            ff = np.flatnonzero(scan[:-1] == 0xFF)
            following = scan[ff + 1]
            ends = ff[(following != 0x00) & (following != 0xFF) & ((following < 0xD0) | (following > 0xD7))]
            if not len(ends):
                break
            marker = int(scan[ends[0] + 1])
            if marker not in _AFTER_SCAN:
                return f"damaged image data: marker 0xFF{marker:02X} inside the scan (offset {pos + int(ends[0])})"
            pos += int(ends[0])
    return ""  # a missing end marker is reported as truncated


def _stat_key(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _cache_file(name: str) -> str:
    digest = hashlib.sha1(os.path.abspath(name).encode()).hexdigest()[:16]
    return str(cache_dir() / "image_check" / f"{digest}.json")


def _load_cache(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            cache = json.load(f)
        return cache["images"] if cache.get("version") == _CACHE_VERSION else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}  # no cache, or a damaged one: check everything again


def _save_cache(path: str, images: dict) -> None:
    with contextlib.suppress(OSError):  # a read-only cache only costs time
        write_json(path, {"version": _CACHE_VERSION, "images": images}, indent=None)


def check_images(
    records: Sequence[ImageRecord],
    name: str = "dataset",
    workers: int | None = None,
    use_cache: bool = True,
    progress: bool = False,
) -> list[ImageProblem]:
    """Decode every record's image (in parallel threads; OpenCV releases the GIL) and list the problems.

    Args:
        records: the images, with the sizes their annotations give.
        name: the dataset's name (annotation file or roots); names its cache file.
        workers: decoding threads (default: the CPU count).
        use_cache: reuse results of files whose size and mtime have not changed.
        progress: show a progress bar on stderr.
    """
    cache_path = _cache_file(name)
    cache = _load_cache(cache_path) if use_cache else {}
    keys = {r.file: _stat_key(r.file) for r in records}
    fresh = {f: cache[f][1] for f, key in keys.items() if key is not None and (cache.get(f) or [None])[0] == key}
    fresh = {f: result for f, result in fresh.items() if result[2] != "too_large"}  # the limit may have changed
    todo = sorted(f for f, key in keys.items() if key is not None and f not in fresh)
    results = dict(fresh)
    if todo:
        from tqdm import tqdm

        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            bar = tqdm(total=len(todo), unit="img", desc="checking images", disable=not progress, file=sys.stderr)
            for file, result in zip(todo, pool.map(inspect_image, todo)):
                results[file] = list(result)
                bar.update()
            bar.close()
    if use_cache:
        _save_cache(cache_path, {f: [keys[f], results[f]] for f in results})
    problems = []
    for record in records:
        if record.file not in results:
            problems.append(ImageProblem(record.file, "unreadable", "file not found"))
            continue
        width, height, kind, detail = results[record.file]
        if kind:
            problems.append(ImageProblem(record.file, kind, detail))
        if width and (width, height) != (record.width, record.height):
            problems.append(
                ImageProblem(
                    record.file, "size_mismatch", f"image is {width}x{height}, annotated {record.width}x{record.height}"
                )
            )
    return problems
