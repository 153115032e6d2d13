"""``gridyolo detect``: a checkpoint or an exported file on images, folders, videos, cameras.

The weights are opened by ``deploy.predictor.load_predictor`` (on the CPU the model stage runs in
ONNX Runtime by default, elsewhere in torch). This module imports no torch: an ``.onnx`` file is
detected on with ONNX Runtime, OpenCV and numpy only.

Writes drawn images (or a drawn video with the source's frame count, size and fps) into a new run
directory, optionally ``predictions.jsonl`` (one record per image or frame), and reports per-stage
times: read/decode (in the reader thread, overlapped with the model), pre-process, model,
decode+NMS, draw/write.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from gridyolo.apps.drawing import draw_detections
from gridyolo.apps.sources import Frame, FrameReader, batched, open_capture, resolve_source, video_properties
from gridyolo.core.decode_settings import DEFAULT_IOU_THRESHOLD
from gridyolo.deploy.predictor import load_predictor
from gridyolo.errors import GridyoloError
from gridyolo.files import new_run_dir, require_empty_folder

STAGES = ("read", "preprocess", "model", "decode_nms", "draw_write")


@dataclass
class StageTimer:
    """Milliseconds spent per stage, summed over images."""

    totals: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    images: int = 0

    def per_image(self) -> dict[str, float]:
        return {k: round(v / max(self.images, 1), 3) for k, v in self.totals.items()}

    def format(self, seconds: float) -> str:
        per = self.per_image()
        parts = ", ".join(f"{k.replace('_', '+').replace('preprocess', 'pre-process')} {v:.1f}" for k, v in per.items())
        rate = self.images / seconds if seconds > 0 else 0.0
        return f"{self.images} images in {seconds:.1f} s ({rate:.1f}/s); ms per image: {parts}"


def _numpy(value: Any) -> np.ndarray:
    """A detection field as a numpy array (a tensor of the torch path, on any device, or an array)."""
    return value.cpu().numpy() if hasattr(value, "cpu") else np.asarray(value)


def predict_frames(predictor: Any, frames: list[Frame], timer: StageTimer) -> tuple[list[dict], float]:
    """Run one batch through the three stages of a predictor (``deploy.predictor.load_predictor``),
    timing each; also the batch's highest score before the threshold. Detections as numpy arrays."""
    start = time.perf_counter()
    batch, params, sizes = predictor.preprocess_arrays([f.image for f in frames])
    predictor.synchronize()
    t1 = time.perf_counter()
    raw = predictor.predict_raw(batch)
    predictor.synchronize()
    t2 = time.perf_counter()
    detections = predictor.postprocess(raw, params, sizes)
    predictor.synchronize()
    t3 = time.perf_counter()
    timer.totals["preprocess"] += (t1 - start) * 1000
    timer.totals["model"] += (t2 - t1) * 1000
    timer.totals["decode_nms"] += (t3 - t2) * 1000
    timer.totals["read"] += sum(f.read_ms for f in frames)
    timer.images += len(frames)
    peak = predictor.peak_score(raw)
    return [{k: _numpy(v) for k, v in d.items()} for d in detections], peak


def prediction_record(frame: Frame, det: dict, class_names: list[str]) -> dict:
    labels = det["labels"].tolist()
    return {
        "source": frame.source,
        "frame": frame.frame,
        "boxes": [[round(float(v), 3) for v in box] for box in det["boxes"].tolist()],
        "scores": [round(float(s), 5) for s in det["scores"].tolist()],
        "labels": labels,
        "names": [class_names[i] for i in labels],
    }


class _Display:
    """``--show``: a window per source when OpenCV has a GUI; otherwise one warning and nothing else."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def show(self, name: str, image_rgb: np.ndarray) -> None:
        if not self.enabled:
            return
        try:
            cv2.imshow(name, cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
            cv2.waitKey(1)
        except cv2.error:
            tqdm.write("gridyolo: warning: --show needs an OpenCV build with a GUI (this one is headless); ignored")
            self.enabled = False


class _Outputs:
    """Draws and writes each batch's results (images, or frames of the output video) in a background
    thread, so that they overlap the next batch's model run (OpenCV releases the GIL while it draws,
    encodes and writes); at most two batches wait, in order. With ``--show`` it all happens in the
    calling thread, where GUI calls belong."""

    def __init__(self, writer: Any, size: tuple[int, int] | None, class_names: list[str], display: _Display) -> None:
        self.writer, self.size, self.class_names, self.display = writer, size, class_names, display
        self.pool = None if display.enabled else ThreadPoolExecutor(max_workers=1, thread_name_prefix="gridyolo-write")
        self.pending: deque[Future] = deque()
        self.written, self.ms = 0, 0.0

    def submit(self, frames: list[Frame], detections: list[dict], paths: list[Path] | None) -> None:
        if self.pool is None:
            self._count(self._write(frames, detections, paths))
            return
        self.pending.append(self.pool.submit(self._write, frames, detections, paths))
        while len(self.pending) > 2:
            self._count(self.pending.popleft().result())  # a failed write raises here

    def finish(self) -> None:
        while self.pending:
            self._count(self.pending.popleft().result())

    def shutdown(self) -> None:
        """Wait for what is queued (an interrupted run keeps it) without raising."""
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        for future in self.pending:
            if future.exception() is None:
                self._count(future.result())
        self.pending.clear()

    def _count(self, done: tuple[int, float]) -> None:
        self.written += done[0]
        self.ms += done[1]

    def _write(self, frames: list[Frame], detections: list[dict], paths: list[Path] | None) -> tuple[int, float]:
        start = time.perf_counter()
        for i, (frame, det) in enumerate(zip(frames, detections)):
            drawn = draw_detections(frame.image, det["boxes"], det["scores"], det["labels"],
                                    self.class_names)  # fmt: skip
            if self.writer is not None:
                if drawn.shape[:2] != self.size:  # a stream may change size: keep the writer's
                    drawn = cv2.resize(drawn, (self.size[1], self.size[0]))
                self.writer.write(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
            elif not cv2.imwrite(str(paths[i]), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR)):
                raise GridyoloError(f"{paths[i]}: could not write the image (disk full or not writable?)")
            self.display.show(frame.source, drawn)
        return len(frames), (time.perf_counter() - start) * 1000


def run_detect(
    weights: str,
    source: str,
    out: str | None = None,
    conf_threshold: float | None = None,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    img_size: int | None = None,
    device: str = "auto",
    batch_size: int = 8,
    save_json: bool = False,
    show: bool = False,
    max_frames: int | None = None,
    progress: bool = True,
    backend: str = "auto",
    trust_compiled: bool = False,
) -> dict[str, Any]:
    """Detect on ``source`` and write the results into ``out`` (default: a new ``runs/detect/expN``).

    Returns a summary: output directory, counts, per-stage ms per image, warnings.
    """
    if batch_size < 1 or (max_frames is not None and max_frames < 1):
        raise GridyoloError(f"batch size {batch_size} and max frames {max_frames} must be at least 1")
    resolved = resolve_source(source)  # fails before any output directory is created
    if out:
        require_empty_folder(out, "--out", exist_ok=None)
    capture = open_capture(resolved) if resolved.kind != "images" else None
    run = _open_run(resolved, capture, out, lambda: load_predictor(
        weights, backend, device, img_size, conf_threshold, iou_threshold, trust_compiled=trust_compiled))
    loop = _detect_all(run, resolved, capture, batch_size, max_frames, save_json, show, progress)
    info = run.predictor.info
    return {
        "out": str(run.out_dir), "source": resolved.spec, "kind": resolved.kind, "images": loop.written,
        "video": str(run.video_path) if run.video_path else None, "expected_frames": run.expected or None,
        "predictions": str(run.out_dir / "predictions.jsonl") if save_json else None,
        "ms_per_image": loop.timer.per_image(), "seconds": round(loop.seconds, 3),
        "timing": loop.timer.format(loop.seconds), "device": info["device"], "backend": info["backend"],
        "warnings": _run_notes(info, resolved, run.expected, loop, max_frames),
        "conf_threshold": info["conf_threshold"], "boxes_per_class": dict(loop.found.most_common()),
        "peak_score": round(loop.peak, 5), "conf_source": info["conf_source"],
        "skipped": [{"file": path, "reason": reason.split(": ", 1)[-1]} for path, reason in loop.skipped],
    }  # fmt: skip


@dataclass
class _Run:
    """What a detect run opened before its first frame: the predictor, the output folder, the video writer."""

    predictor: Any
    out_dir: Path
    writer: Any = None
    video_path: Path | None = None
    expected: int = 0  # the frame count a video announces (0: unknown, or images)
    frame_hw: tuple[int, int] | None = None


@dataclass
class _Loop:
    """What the detection loop saw: images written, boxes per class, the highest score, stage timings."""

    written: int
    found: Counter
    peak: float
    timer: StageTimer
    seconds: float
    decoded: int
    skipped: list


def _open_run(resolved: Any, capture: Any, out: str | None, open_predictor: Any) -> _Run:
    """Load the predictor, then create the output folder and (for a video or camera) the video writer;
    the capture and the writer are released on every error path."""
    writer = None
    try:
        predictor = open_predictor()
        if capture is not None:  # before any folder is made: a stream that says nothing leaves nothing behind
            fps, width, height, expected = video_properties(capture, resolved.spec)
        run = _Run(predictor, Path(out) if out else new_run_dir("runs/detect", "exp"))
        run.out_dir.mkdir(parents=True, exist_ok=True)
        if capture is not None:
            run.expected = expected
            stem = Path(resolved.spec).stem if resolved.kind == "video" else resolved.kind
            run.video_path, run.frame_hw = run.out_dir / f"{stem}.mp4", (height, width)
            writer = cv2.VideoWriter(str(run.video_path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
            if not writer.isOpened():
                raise GridyoloError(f"{run.video_path}: cannot open a video writer (mp4v codec missing, or not "
                                    "writable?)")  # fmt: skip
            run.writer = writer
        return run
    except BaseException:
        if capture is not None:
            capture.release()
        if writer is not None:
            writer.release()
        raise


def _detect_all(run: _Run, resolved: Any, capture: Any, batch_size: int, max_frames: int | None, save_json: bool,
                show: bool, progress: bool) -> _Loop:  # fmt: skip
    """Read, predict, draw and write every frame (reading and writing in threads beside the model);
    Ctrl-C keeps what was written. Releases the capture and the writer."""
    class_names = list(run.predictor.info["class_names"])
    bar = tqdm(total=run.expected or len(resolved.paths) or None, unit="frame" if capture else "img",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)  # fmt: skip
    prefetch = min(max(2 * batch_size, 8), 64)  # frames decoded ahead: bounded whatever --batch is
    reader = FrameReader(resolved, capture, prefetch=prefetch, max_frames=max_frames,
                         warn=lambda message: tqdm.write(message, file=sys.stderr))  # above a progress bar
    timer = StageTimer()
    outputs = _Outputs(run.writer, run.frame_hw, class_names, _Display(show))
    jsonl = open(run.out_dir / "predictions.jsonl", "w", encoding="utf-8") if save_json else None  # noqa: SIM115
    names_used: set[str] = set()
    found, peak = Counter(), 0.0
    start = time.perf_counter()
    try:
        for frames in batched(iter(reader), batch_size):
            detections, batch_peak = predict_frames(run.predictor, frames, timer)
            peak = max(peak, batch_peak)
            for frame, det in zip(frames, detections):
                found.update(class_names[i] for i in det["labels"].tolist())
                if jsonl is not None:
                    jsonl.write(json.dumps(prediction_record(frame, det, class_names)) + "\n")
            names = None if run.writer is not None else [_unique_name(Path(f.source).name, names_used) for f in frames]
            outputs.submit(frames, detections, names and [run.out_dir / name for name in names])
            bar.update(len(frames))
        outputs.finish()
    except KeyboardInterrupt:
        tqdm.write("gridyolo: interrupted; keeping what was written")
    finally:
        outputs.shutdown()
        bar.close()
        reader.close()
        if run.writer is not None:
            run.writer.release()
        if capture is not None:
            capture.release()
        if jsonl is not None:
            jsonl.close()
    timer.totals["draw_write"] = outputs.ms
    return _Loop(outputs.written, found, peak, timer, time.perf_counter() - start, reader.decoded, reader.skipped)


def _run_notes(info: dict, resolved: Any, expected: int, loop: _Loop, max_frames: int | None) -> list[str]:
    """What the user should know about the run: why a faster path was not taken, skipped files, a video
    that ended early, nothing read, or nothing found (with the highest score, to choose a lower --conf)."""
    notes = list(info["notes"])
    if loop.skipped:  # each was printed when it was met; the summary counts them once
        notes.append(f"skipped {len(loop.skipped)} unreadable file(s) (each named above)")
    if resolved.kind == "video" and expected and loop.decoded < expected and max_frames is None:
        notes.append(f"{resolved.spec}: video ended early: decoded {loop.decoded} of {expected} frames, kept them")
    if loop.written == 0:
        notes.append(f"{resolved.spec}: nothing could be read")
    elif not loop.found:
        notes.append(f"no box scored {info['conf_threshold']:g} or more in {loop.written} image(s); the highest "
                     f"score was {loop.peak:.3g} (lower --conf to see weaker detections)")  # fmt: skip
    return notes


def _unique_name(name: str, used: set[str]) -> str:
    """Sources from a glob over several folders may share a file name; never overwrite one."""
    stem, suffix = os.path.splitext(name)
    suffix = suffix if suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp") else ".jpg"
    candidate, i = f"{stem}{suffix}", 2
    while candidate in used:
        candidate, i = f"{stem}_{i}{suffix}", i + 1
    used.add(candidate)
    return candidate
