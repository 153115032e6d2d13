"""What ``gridyolo detect --source`` can read, and a background reader that decodes ahead of the model.

A source is an image file, a directory, a glob, a video file, a webcam index (``0``) or a stream URL
OpenCV can open. ``FrameReader`` yields ``Frame``s (RGB ``uint8`` HWC) from a thread, so JPEG / video
decoding overlaps the model; unreadable images in a folder are skipped with a warning, a video that
ends before its announced frame count keeps what was decoded and says so.
"""

from __future__ import annotations

import glob
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from gridyolo.data.images import IMAGE_SUFFIXES, load_image, to_rgb_uint8
from gridyolo.errors import DatasetError, GridyoloError
from gridyolo.input_guards import check_image_pixels, require_regular_file

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")


@dataclass
class Source:
    """A resolved ``--source``: ``kind`` is ``images``, ``video``, ``webcam`` or ``stream``."""

    kind: str
    spec: str
    paths: list[str]  # images: the files; video / stream: [path or URL]; webcam: []
    index: int = 0  # webcam index


@dataclass
class Frame:
    """One decoded image or video frame (``image`` RGB ``uint8`` ``[H, W, 3]``)."""

    source: str
    frame: int | None
    image: np.ndarray
    read_ms: float


def resolve_source(spec: str) -> Source:
    """Classify ``--source``; raises ``GridyoloError`` (one line naming it) when it cannot be used."""
    if spec.isdigit():
        return Source("webcam", spec, [], int(spec))
    if "://" in spec:
        return Source("stream", spec, [spec])
    if os.path.isdir(spec):
        files = sorted(os.path.join(spec, f) for f in os.listdir(spec) if os.path.isfile(os.path.join(spec, f)))
        if not files:
            raise GridyoloError(f"{spec}: the directory has no files")
        return Source("images", spec, files)
    if any(c in spec for c in "*?["):
        files = sorted(f for f in glob.glob(spec, recursive=True) if os.path.isfile(f))
        if not files:
            raise GridyoloError(f"{spec}: no files match this pattern")
        return Source("images", spec, files)
    require_regular_file(spec, "source")  # a named pipe as a "video" would block forever
    suffix = os.path.splitext(spec)[1].lower()
    if suffix == ".txt":
        return Source("images", spec, list_file_images(spec))
    if suffix in VIDEO_SUFFIXES:
        return Source("video", spec, [spec])
    if suffix in IMAGE_SUFFIXES:
        return Source("images", spec, [spec])
    raise GridyoloError(
        f"{spec}: not an image ({', '.join(IMAGE_SUFFIXES)}) or video ({', '.join(VIDEO_SUFFIXES)}) file"
    )


def list_file_images(path: str) -> list[str]:
    """The images a text file names, one per line: a path (absolute, or relative to the working folder
    or to the file), or an image id of a VOC split file (``ImageSets/Main/x.txt`` -> ``JPEGImages/id.*``).
    Lines that name no image are an error listing the first of them."""
    folder = os.path.dirname(os.path.abspath(path))
    voc_images = os.path.join(folder, "..", "..", "JPEGImages")
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    except UnicodeDecodeError:
        raise GridyoloError(f"{path}: not a UTF-8 text file of image paths") from None
    images, missing = [], []
    for line in lines:
        entry = line.split()[0] if not os.path.exists(line) else line  # VOC lines may carry a flag: "id 1"
        candidates = [entry, os.path.join(folder, entry)]
        candidates += [os.path.join(voc_images, entry + suffix) for suffix in (".jpg", ".jpeg", ".png", ".JPG")]
        found = next((os.path.normpath(c) for c in candidates if os.path.isfile(c)), None)
        (images if found else missing).append(found or line)
    if missing:
        raise GridyoloError(f"{path}: {len(missing)} of {len(lines)} line(s) name no image (first: '{missing[0]}')")
    if not images:
        raise GridyoloError(f"{path}: lists no images")
    return images


def open_capture(source: Source) -> cv2.VideoCapture:
    """Open a video, stream or webcam; a one-line ``GridyoloError`` when OpenCV cannot."""
    cap = cv2.VideoCapture(source.index if source.kind == "webcam" else source.paths[0])
    if not cap.isOpened():
        cap.release()
        what = {"webcam": f"webcam {source.index}", "stream": f"stream {source.spec}"}.get(source.kind, source.spec)
        hint = " (no camera at this index?)" if source.kind == "webcam" else " (missing codec or not a video?)"
        raise GridyoloError(f"{what}: cannot open{hint}")
    return cap


def video_properties(cap: cv2.VideoCapture, name: str = "video") -> tuple[float, int, int, int]:
    """``(fps, width, height, announced frame count)``; fps 25 and count 0 when unknown. Frames above
    the pixel limit are refused (``DatasetError``) before any is decoded."""
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if fps and np.isfinite(fps) and fps > 0 else 25.0
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    check_image_pixels(width, height, name)
    return fps, width, height, max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)


class FrameReader:
    """Iterate over the frames of a ``Source``, decoded in a background thread.

    Args:
        source: from ``resolve_source``.
        capture: an opened capture for video / stream / webcam sources (``open_capture``).
        prefetch: frames decoded ahead (bounded, so memory stays flat on long videos).
        max_frames: stop after this many frames (webcams and streams never end by themselves).
        warn: called with a one-line message for each skipped file (default: print to stderr).

    After iteration ``skipped`` lists ``(path, reason)`` of unreadable folder files and ``decoded`` the
    number of frames read.
    """

    _END = object()

    def __init__(
        self,
        source: Source,
        capture: cv2.VideoCapture | None = None,
        prefetch: int = 8,
        max_frames: int | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.source, self.capture, self.max_frames = source, capture, max_frames
        self.warn = warn or (lambda message: print(message, file=sys.stderr))
        self.skipped: list[tuple[str, str]] = []
        self.decoded = 0
        self._queue: queue.Queue = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="gridyolo-reader", daemon=True)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _images(self) -> Iterator[Frame]:
        for path in self.source.paths:
            start = time.perf_counter()
            try:
                image = load_image(path)
            except DatasetError as exc:
                self.skipped.append((path, str(exc)))
                self.warn(f"gridyolo: warning: skipped {exc}")
                continue
            yield Frame(path, None, image, (time.perf_counter() - start) * 1000)

    def _frames(self) -> Iterator[Frame]:
        name = self.source.spec if self.source.kind != "webcam" else f"webcam:{self.source.index}"
        index = 0
        while True:
            start = time.perf_counter()
            ok, image = self.capture.read()
            if not ok or image is None:
                return
            yield Frame(name, index, to_rgb_uint8(image, name), (time.perf_counter() - start) * 1000)
            index += 1

    def _run(self) -> None:
        try:
            frames = self._images() if self.source.kind == "images" else self._frames()
            for frame in frames:
                if self.max_frames is not None and self.decoded >= self.max_frames:
                    break
                if not self._put(frame):
                    return
                self.decoded += 1
        except BaseException as exc:  # handed to the consumer, raised there
            self._error = exc
        finally:
            self._put(self._END)

    def __iter__(self) -> Iterator[Frame]:
        self._thread.start()
        try:
            while True:
                item = self._queue.get()
                if item is self._END:
                    break
                yield item
        finally:
            self.close()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)


def batched(frames: Iterator[Frame], size: int) -> Iterator[list[Frame]]:
    """Group frames into lists of ``size`` (the last one may be shorter)."""
    batch: list[Frame] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
