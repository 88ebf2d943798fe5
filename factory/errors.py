"""The mark of a user's mistake (a bad config, policy, manifest or input): shown as one line naming the file and key,
never with a traceback, however deep in a flow it was raised. A bug raises anything else and keeps its traceback.
A disk that is full, read-only or forbidden is the user's to fix as well: `environment_problem` recognises it."""

from __future__ import annotations

import errno
import re
import shutil
from pathlib import Path

# OSErrors another try cannot fix and the user can: the disk, not the code.
ENVIRONMENT_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                      errno.EROFS: "read-only file system", errno.EACCES: "permission denied"}
# Beam's multi-process runner re-raises a worker's error as a RuntimeError holding only its text.
_ERRNO_TEXT = re.compile(r"\[Errno (\d+)\] [^:'\n]*(?:: '([^'\n]*)')?")


class UserError(Exception):
    """Base of every error whose message alone tells the user what to change."""


def exception_chain(exc: BaseException) -> list[BaseException]:
    """The error and every error it was raised from or during, outermost first."""
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def environment_problem(exc: BaseException) -> str | None:
    """"no space left on device: PATH" (or read-only, quota, permission) when the error or one it chains is that
    kind of OSError, also as the text of a worker's error; else None."""
    for link in exception_chain(exc):
        if isinstance(link, OSError) and link.errno in ENVIRONMENT_ERRNOS:
            return ENVIRONMENT_ERRNOS[link.errno] + (f": {link.filename}" if link.filename else "")
        for match in _ERRNO_TEXT.finditer(str(link)):
            if int(match[1]) in ENVIRONMENT_ERRNOS:
                return ENVIRONMENT_ERRNOS[int(match[1])] + (f": {match[2]}" if match[2] else "")
    return None


FULL_BYTES = 1 << 20  # free space below this on the build's disk: what a crashed worker most likely met


def full_disk(path: str | Path) -> str | None:
    """"no space left on device: PATH" when PATH's file system is (nearly) full: the likely cause of a worker that
    died without a word (its error could not be written either)."""
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return None
    return f"no space left on device: {path}" if free < FULL_BYTES else None
