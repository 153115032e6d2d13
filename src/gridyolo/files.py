"""Files that are never half-written and never overwritten: atomic writes, new run directories and
the cache of what gridyolo can recompute."""

from __future__ import annotations

import itertools
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gridyolo.errors import GridyoloError

# what a run writes into its directory; a directory holding any of them is never reused
RUN_RECORDS = ("weights", "config.yaml", "status.json", "metrics.csv", "metrics.json")


def cache_dir() -> Path:
    """Where gridyolo keeps what it can recompute: ``$GRIDYOLO_CACHE``, else ``~/.cache/gridyolo``."""
    return Path(os.environ.get("GRIDYOLO_CACHE") or Path.home() / ".cache" / "gridyolo")


def require_free_file(path: str, flag: str, exist_ok: bool = False) -> None:
    """An output file (``flag`` names the option that chose it): never a folder, never an existing file
    unless ``exist_ok`` (``--exist-ok``). A link counts as existing, even a dangling one."""
    if os.path.isdir(path):
        raise GridyoloError(f"{path}: is a folder; {flag} names the output file")
    if os.path.lexists(path) and not exist_ok:
        raise GridyoloError(f"{path}: exists; choose another {flag} or pass --exist-ok to overwrite it")


def require_empty_folder(path: str, flag: str, exist_ok: bool | None = False) -> None:
    """An output folder: new or empty, or any folder with ``exist_ok``; ``exist_ok=None``: the command
    has no ``--exist-ok`` (its results are never overwritten)."""
    if os.path.lexists(path) and not os.path.isdir(path):
        raise GridyoloError(f"{path}: exists and is not a folder")
    if os.path.isdir(path) and os.listdir(path) and not exist_ok:
        hint = "results are never overwritten" if exist_ok is None else "or pass --exist-ok"
        raise GridyoloError(f"{path}: folder is not empty; choose another {flag} ({hint})")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """A temporary name to write ``path`` under; renamed onto ``path`` when the block succeeds, removed
    when it fails. A reader never sees half a file, and two processes never share a temporary file
    (its name carries the process id). The parent folder is created."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` atomically (see ``atomic_path``)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def write_json(path: str | os.PathLike, data: Any, indent: int | None = 2) -> None:
    """Write json atomically (see ``atomic_path``); ``indent=None`` for large machine-read files."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=indent)


def copy_file(source: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Copy atomically (see ``atomic_path``)."""
    with atomic_path(dest) as tmp:
        shutil.copyfile(source, tmp)


def new_run_dir(project: str | os.PathLike, name: str, exist_ok: bool = False) -> Path:
    """Create and return ``project/name``, or ``name2``, ``name3``... if taken (atomic ``mkdir``).

    ``exist_ok`` reuses ``project/name`` when it exists but holds no run records yet (the demo writes
    its data there first); a directory that a run has written into is never reused.
    """
    if exist_ok:
        wanted = Path(project) / name
        if not any((wanted / record).exists() for record in RUN_RECORDS):
            wanted.mkdir(parents=True, exist_ok=True)
            return wanted
    for i in itertools.count(1):
        candidate = Path(project) / (name if i == 1 else f"{name}{i}")
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            continue
    raise AssertionError("unreachable")
