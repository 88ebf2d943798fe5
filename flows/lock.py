"""Directory lock: one flow run writes a build or training directory at a time; a dead holder's lock is taken over."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from datafactory.factory.errors import UserError

LOCK_NAME = ".lock"

log = logging.getLogger(__name__)


class DirLocked(UserError, RuntimeError):
    """Another live process is writing the same directory."""


def describe(holder: dict) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    run = f", flow run {holder['flow_run']}" if holder.get("flow_run") else ""
    return f"pid {holder.get('pid')} on {holder.get('host')} since {started}{run}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def read_holder(fd: int) -> dict | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 64 << 10)
    try:
        return json.loads(raw) if raw.strip() else None
    except json.JSONDecodeError:
        return {"pid": None, "host": "?", "note": "unreadable lock record"}


def write_holder(fd: int, holder: dict) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(holder).encode())
    os.fsync(fd)


def locked(directory: str | Path, fd: int) -> DirLocked:
    return DirLocked(f"{Path(directory).resolve()} is being written by {describe(read_holder(fd) or {})}; wait for it "
                     "to finish, or use another directory")


def check_unlocked(directory: str | Path) -> None:
    """Raise DirLocked at once when a live process holds DIR's lock: the CLI refuses a second build in a moment,
    before it starts Prefect (the flow takes the lock itself, and holds it, when it runs)."""
    path = Path(directory) / LOCK_NAME
    if not path.is_file():
        return
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise locked(directory, fd) from None
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def dir_lock(directory: str | Path, flow_run: str | None = None) -> Iterator[dict | None]:
    """Hold DIR/.lock while writing DIR; yields the record of a stale holder it replaced, if any.

    flock is released by the kernel when its holder dies, however it dies, so a record left in the file by a
    process that no longer holds the flock is stale by construction; the file itself is never deleted, because
    unlinking a flock'd file lets two processes lock two different inodes.
    """
    path = Path(directory) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise locked(directory, fd) from None
        stale = read_holder(fd)
        if stale:
            alive = stale.get("host") == socket.gethostname() and pid_alive(stale.get("pid") or -1)
            log.warning("took over a stale lock on %s from %s (%s)", directory, describe(stale),
                        "pid reused by another process" if alive else "process no longer running")
        write_holder(fd, {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                          "flow_run": flow_run})
        try:
            yield stale
        finally:
            os.ftruncate(fd, 0)  # an empty file is a free lock; only a killed holder leaves a record behind
    finally:
        os.close(fd)


@contextlib.contextmanager
def run_lock(directory: str | Path) -> Iterator[None]:
    """dir_lock for the current flow run: records its id, and reports a stale lock it took over in the run's log."""
    from prefect import get_run_logger
    from prefect.runtime import flow_run

    with dir_lock(directory, flow_run=flow_run.id) as stale:
        if stale:
            get_run_logger().warning("took over a stale lock on %s left by %s", Path(directory).resolve(),
                                     describe(stale))
        yield
