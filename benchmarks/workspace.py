"""Where a build benchmark works: `--data` (the shared real data) and `--keep DIR` (keep inputs and builds there
for a look afterwards, instead of a temporary folder)."""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def add_workspace_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--keep", type=Path, help="write inputs and builds here instead of a temporary folder")


@contextlib.contextmanager
def workspace(keep: Path | None) -> Iterator[Path]:
    """The benchmark's root folder, with an empty `input/` inside; temporary unless `keep` names one."""
    with tempfile.TemporaryDirectory() as tmp:
        root = keep or Path(tmp)
        (root / "input").mkdir(parents=True, exist_ok=True)
        yield root
