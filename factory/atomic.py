"""The one way files are written here: under a temporary name beside the target, then renamed into place, so no
reader and no resumed build ever sees half a file. A killed writer leaves only `.NAME.tmp-PID` behind."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path


def temporary_name(path: Path) -> Path:
    """Per process and thread, so two writers of one target (a multi-threaded runner) never share it."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields the temporary path to write; it replaces ``path`` when the block ends without an error, and is removed
    when one is raised."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        _fsync(tmp)  # on disk before the rename, so even a machine crash leaves the old file or the whole new one
        os.replace(tmp, path)
    except OSError as err:
        if err.filename is None:  # a write that fails (a full disk) names no file: name the one being written
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    finally:
        tmp.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
