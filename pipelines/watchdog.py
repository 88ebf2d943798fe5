"""Watches a pipeline on Beam's in-process runner with worker processes: when a worker dies mid-pipeline (the OOM
killer) or the build's disk fills up (a worker's failure report can then be lost), the runner's driver would wait
forever; the watchdog ends that wait with a PipelineStuck error in the main thread instead."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

import psutil

from datafactory.factory.errors import full_disk

POLL_SECONDS = 1.0
GRACE_SECONDS = 10.0  # a pipeline that finishes normally stops its workers and returns well within this
# The directory whose disk the running stage writes (set by watched_disk).
WATCHED_DISK: ContextVar[Path | None] = ContextVar("watched_disk", default=None)


@contextlib.contextmanager
def watched_disk(build_dir: Path) -> Iterator[None]:
    """While the block runs (a stage), a full disk under ``build_dir`` ends a waiting pipeline."""
    watching = WATCHED_DISK.set(build_dir)
    try:
        yield
    finally:
        WATCHED_DISK.reset(watching)


class PipelineStuck(RuntimeError):
    """A Beam worker process ended, or the build's disk filled up, while the pipeline still waited."""


def worker_processes() -> dict[int, psutil.Process]:
    """This process's Beam SDK worker processes, by pid."""
    found = {}
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if any("sdk_worker" in part for part in child.cmdline()):
                found[child.pid] = child
    return found


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_workers() -> None:
    """Beam's runner, ending a pipeline on an error, waits for its workers to exit; a worker that still waits for
    work never does. Killed first, they leave the runner nothing to wait for."""
    for process in worker_processes().values():
        with contextlib.suppress(psutil.Error):
            process.kill()


def ending_workers_first(handler: object) -> object:
    """A signal handler that kills the pipeline's workers, then does what ``handler`` did (Prefect's raises its
    TerminationSignal, Python's default raises KeyboardInterrupt)."""
    def handle(signum: int, frame: object) -> None:
        kill_workers()
        deliver(handler, signum, frame)

    return handle


def deliver(handler: object, signum: int, frame: object) -> None:
    """Do what ``handler`` (as signal.getsignal returns it) does with ``signum``: call it, or die by the default."""
    if callable(handler):
        handler(signum, frame)
    elif handler == signal.SIG_DFL:
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)


def _raise_stuck(signum: int, frame: object) -> None:
    kill_workers()
    raise PipelineStuck("a Beam worker process died, or the build's disk filled up, while the pipeline waited on it "
                        "(the stage's worker log has the last words)")


@contextlib.contextmanager
def watched_workers(enabled: bool) -> Iterator[None]:
    """Within this block (run in the main thread), a worker that disappears, or a full disk under WATCHED_DISK, not
    followed by the pipeline's end within GRACE_SECONDS raises PipelineStuck in the main thread (SIGUSR1 sent to it
    wakes it from the runner's wait); SIGTERM and SIGINT kill the workers before their usual handler runs."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    done = threading.Event()
    main = threading.main_thread().ident
    disk = WATCHED_DISK.get()
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGUSR1, _raise_stuck)
    for signum in (signal.SIGTERM, signal.SIGINT):
        if previous[signum] != signal.SIG_IGN:
            signal.signal(signum, ending_workers_first(previous[signum]))

    def watch() -> None:
        seen: dict[int, psutil.Process] = {}
        while not done.wait(POLL_SECONDS):
            seen |= worker_processes()
            gone = [pid for pid, process in seen.items() if not alive(process)]
            if (gone or disk is not None and full_disk(disk)) and not done.wait(GRACE_SECONDS):
                signal.pthread_kill(main, signal.SIGUSR1)
                return

    watcher = threading.Thread(target=watch, name="beam-worker-watchdog", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
