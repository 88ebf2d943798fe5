"""Loading and training entry points of the fastText library, with clear errors for a broken install.

Training runs in a child process: fastText (as built in fasttext-numpy2 0.10.4) leaves most of its input
matrix uninitialised when ``thread < 10`` and relies on fresh, zeroed memory, so a second training in the
same process can start from garbage (non-deterministic models, "Encountered NaN"). A fresh process that
takes every allocation of 4 KiB or more from new zeroed pages (glibc ``MALLOC_MMAP_THRESHOLD_``) trains
deterministically.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

_TRAIN_SCRIPT = """
import json, sys
import fasttext
if not hasattr(fasttext, "train_supervised"):
    sys.exit("the installed 'fasttext' module cannot train (the prediction-only fasttext-predict wheel "
             "overwrote it?); reinstall fasttext-numpy2")
job = json.loads(sys.argv[1])
model = fasttext.train_supervised(**job["params"])
model.save_model(job["output"])
"""
_CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "4096", "OMP_NUM_THREADS": "1"}


FASTTEXT_MAGIC = 793712314  # the int32 every fastText .bin / .ftz file starts with (then its format version)


def not_a_fasttext_model(path: str | Path) -> str | None:
    """Why the file cannot be a fastText model (its header), or None: checked before a build runs any stage."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    if int.from_bytes(head, "little", signed=True) != FASTTEXT_MAGIC or len(head) < 4:
        return "is not a fastText model (.bin or .ftz): it lacks fastText's header"
    return None


def _fasttext() -> Any:
    try:
        import fasttext
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("fastText is not installed: pip install fasttext-numpy2") from err
    return fasttext


def load_fasttext_model(path: str | Path) -> Any:
    """``fasttext.load_model`` with the library's stderr chatter suppressed and a clear missing-file error."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"fastText model not found: {path}")
    fasttext = _fasttext()
    with contextlib.redirect_stderr(io.StringIO()):
        return fasttext.load_model(str(path))


def train_supervised_file(train_file: str | Path, model_file: str | Path, params: dict[str, Any]) -> None:
    """Run ``fasttext.train_supervised(input=train_file, **params)`` in a fresh process; save the model."""
    job = {"params": {**params, "input": str(train_file), "verbose": 0}, "output": str(model_file)}
    proc = subprocess.run(
        [sys.executable, "-c", _TRAIN_SCRIPT, json.dumps(job)],
        env={**os.environ, **_CHILD_ENV},
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise RuntimeError(f"fastText training failed: {detail[-1] if detail else f'exit {proc.returncode}'}")
