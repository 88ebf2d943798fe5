"""Runs every build stage in-process and SIGKILLs itself inside one of them, for tests/flows/test_faults.py.

The kill comes at the stage's second atomic rename (one output in place, the next still under its temporary
name) or just before its completion marker's rename, whichever is first; a stage that runs in an earlier stage's
pass is known by where its files go. By hand:
    python tests/flows/killable_build.py CONFIG OUT [STAGE]
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

MARKER = "_SUCCESS.json"
RENAMES_BEFORE_KILL = 2


def arm(kill_stage: str | None, current: list[str]) -> None:
    """Wrap os.replace (every atomic write ends in it: parts, shards, tokenizer, index, marker) with the kill."""
    real_replace = os.replace
    renames = 0

    def replace(src, dst, *args, **kwargs):  # noqa: ANN001, ANN202 - same signature as os.replace
        nonlocal renames
        if current and current[-1] == kill_stage or writes_for(Path(dst), kill_stage):
            renames += 1
            if renames >= RENAMES_BEFORE_KILL or Path(dst).name == MARKER:
                os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst, *args, **kwargs)

    os.replace = replace


def writes_for(path: Path, stage: str | None) -> bool:
    """Whether ``path`` is one of the stage's parts, its ledger parts or its marker."""
    in_stage_dir = path.parent.name == stage and path.parent.parent.name == "stages"
    return in_stage_dir or (path.parent.name == "ledger" and path.name.startswith(f"{stage}-part-"))


def main(config_path: str, out: str, kill_stage: str | None = None) -> None:
    from datafactory.factory.config import load_config
    from datafactory.pipelines.registry import STAGES

    current: list[str] = []
    arm(kill_stage, current)
    config = load_config(config_path)
    for stage in STAGES:
        current.append(stage.name)
        stage.execute(config, Path(out))


if __name__ == "__main__":
    main(*globals().get("ARGS", sys.argv[1:]))
