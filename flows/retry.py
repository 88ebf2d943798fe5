"""Retry policy for flow tasks: exponential backoff, and only for errors a second try can fix."""

from __future__ import annotations

from concurrent.futures import BrokenExecutor
from typing import Any

from prefect.tasks import exponential_backoff

from datafactory.factory.errors import environment_problem, exception_chain

RETRIES = 3
RETRY_DELAYS = exponential_backoff(backoff_factor=10)  # 10 s, 20 s, 40 s
RETRY_JITTER = 0.5  # spread retries of concurrent builds hitting the same flaky store

# Lost connections, timeouts, dead worker pools: the same call can succeed a moment later.
TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    ConnectionError, TimeoutError, InterruptedError, EOFError, BrokenExecutor,
)
# OSError subclasses that will fail the same way again (bad paths, permissions); other OSErrors (EIO,
# ESTALE on a network filesystem, ...) are worth another try.
PERMANENT_OS_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError,
)
# Beam's multi-process runner re-raises a worker's error as a RuntimeError carrying only its text.
TRANSIENT_NAMES = tuple(cls.__name__ for cls in (*TRANSIENT_TYPES, *ConnectionError.__subclasses__()))


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying; config errors, bad data, a full or read-only disk and bugs fail at once."""
    if environment_problem(exc) is not None:
        return False
    for link in exception_chain(exc):
        if isinstance(link, TRANSIENT_TYPES):
            return True
        if isinstance(link, OSError) and not isinstance(link, PERMANENT_OS_ERRORS):
            return True
        if isinstance(link, RuntimeError) and any(name in str(link) for name in TRANSIENT_NAMES):
            return True
    return False


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry_condition_fn: retry a failed task run only when its exception is transient."""
    exc = state.data
    if not isinstance(exc, BaseException):
        try:
            exc = state.result(raise_on_failure=False)
        except Exception:  # a result that cannot be read back tells nothing about the error: do not retry
            return False
    return isinstance(exc, BaseException) and is_transient(exc)
