"""Stage completion markers: a stage is done when its marker exists with matching config and input hashes."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from datafactory.factory.atomic import write_text_atomic
from datafactory.factory.shards import sha256_file

MARKER_NAME = "_SUCCESS.json"


def marker_path(stage_dir: Path) -> Path:
    return stage_dir / MARKER_NAME


def read_marker(stage_dir: Path) -> dict | None:
    path = marker_path(stage_dir)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def outputs_digest(stage_dir: Path) -> str:
    """What a downstream stage's input digest takes from a finished stage: the sha256 of each of its outputs (not its
    settings or counts), so a change upstream that writes the same bytes re-runs nothing after it."""
    marker = read_marker(stage_dir)
    if marker is None:
        raise FileNotFoundError(f"{marker_path(stage_dir)}: stage {stage_dir.name!r} has not finished")
    outputs = json.dumps(marker["outputs"], sort_keys=True).encode()
    return hashlib.sha256(outputs).hexdigest()


def write_marker(
    build_dir: Path, stage_dir: Path, stage: str, config_hash: str, input_hash: str, counts: dict,
    outputs: list[Path],
) -> dict:
    """Written last and atomically, listing every output with its sha256, so partial output is never done."""
    marker = {
        "stage": stage,
        "config_hash": config_hash,
        "input_hash": input_hash,
        "counts": counts,
        "outputs": {str(p.relative_to(build_dir)): sha256_file(p) for p in sorted(outputs)},
    }
    write_text_atomic(marker_path(stage_dir), json.dumps(marker, indent=2, sort_keys=True))
    return marker


def reset_paths(directory: Path, stray_files: list[Path]) -> None:
    """Clear what an unfinished run of a stage left behind."""
    if directory.exists():
        shutil.rmtree(directory)
    for path in stray_files:
        path.unlink(missing_ok=True)
    directory.mkdir(parents=True)

