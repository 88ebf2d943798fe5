"""Training checkpoints: the state a run saves, where it lives under out_dir, and where a run starts from
(scratch, resuming out_dir's latest checkpoint, or branching a decay off a stable one)."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from datafactory.factory.atomic import atomic_path
from datafactory.trainer.data import ManifestLoader
from datafactory.trainer.model import ModelConfig

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
STABLE_END = "stable-end.pt"  # the checkpoint where the decay starts: what `anneal_from` branches off


def step_path(out_dir: str | Path, step: int) -> Path:
    return Path(out_dir) / CHECKPOINT_DIR / f"step-{step:08d}.pt"


def stable_end_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / CHECKPOINT_DIR / STABLE_END


def checkpoint_steps(out_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every step checkpoint in out_dir/checkpoints, oldest first."""
    folder = Path(out_dir) / CHECKPOINT_DIR
    matches = [(re.fullmatch(r"step-(\d+)\.pt", path.name), path) for path in folder.glob("step-*.pt")]
    return sorted((int(match.group(1)), path) for match, path in matches if match)


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The checkpoint with the most steps in out_dir/checkpoints (half-written temp files are ignored)."""
    steps = checkpoint_steps(out_dir)
    return steps[-1][1] if steps else None


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """torch.save through factory.atomic (temp name, fsync, rename): a reader never sees a half-written checkpoint."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(state, handle)
    return path


def load_checkpoint(path: str | Path, device: torch.device) -> dict[str, Any]:
    return torch.load(path, map_location=device, weights_only=True)


def prune_checkpoints(out_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` step checkpoints; keep <= 0 keeps them all."""
    for _, path in checkpoint_steps(out_dir)[:-keep] if keep > 0 else []:
        path.unlink()  # stable-end.pt is a separate link, so the decay-start checkpoint survives


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link source to target (atomically), copying where the filesystem cannot link."""
    with atomic_path(target) as tmp:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


# ----------------------------------------------------------------------------- what a checkpoint holds


def training_state(step: int, tokens: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   loader: ManifestLoader, run: dict[str, Any], cuda: bool) -> dict[str, Any]:
    """Everything a resumed run needs to continue on the same trajectory; `run` holds the settings a
    resume must match (model config, batch size) and the schedule it must keep."""
    return {
        "step": step,
        "tokens": tokens,
        "phase": loader.phase.name,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "loader": loader.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if cuda else []},
        "run": run,
    }


def save_step(out_dir: Path, state: dict[str, Any], keep: int) -> Path:
    """Save checkpoints/step-N.pt for the state's step, then prune to the newest `keep`."""
    path = save_checkpoint(step_path(out_dir, state["step"]), state)
    prune_checkpoints(out_dir, keep)
    return path


# ----------------------------------------------------------------------------- where a run starts


@dataclass
class Start:
    """Where a run begins: from scratch, resuming out_dir's latest checkpoint, or branching a decay off
    a stable checkpoint. A branch starts its decay where the checkpoint is and lasts decay_tokens."""

    kind: str  # scratch | resume | branch
    checkpoint: dict | None
    path: Path | None
    decay_start_tokens: int
    total_tokens: int


def find_start(out_dir: Path, anneal_from: str | Path | None, lr_schedule: dict, config: ModelConfig,
               batch_size: int, device: torch.device) -> Start:
    """Load the checkpoint a run starts from, if any, and check it fits the run asked for."""
    resume = latest_checkpoint(out_dir)
    if resume is None and anneal_from is None:
        return Start("scratch", None, None, lr_schedule["decay_start_tokens"], lr_schedule["total_tokens"])
    if resume is not None and anneal_from is not None:
        log.warning("%s already holds checkpoints: resuming from %s, not branching from %s",
                    out_dir, resume, anneal_from)
    path = resume or Path(anneal_from)
    ckpt = load_checkpoint(path, device)
    saved = ckpt["run"]
    if saved["model_config"] != dataclasses.asdict(config):
        raise ValueError(f"checkpoint {path} holds another model: {saved['model_config']} "
                         f"(asked for {dataclasses.asdict(config)})")
    if resume is not None:
        if saved["batch_size"] != batch_size:
            raise ValueError(f"checkpoint {path} was trained with batch_size {saved['batch_size']}, "
                             f"not {batch_size}: resuming would change the trajectory")
        return Start("resume", ckpt, path, saved["decay_start_tokens"], saved["total_tokens"])
    if ckpt["phase"] != "stable":
        raise ValueError(f"anneal_from {path} is a checkpoint of the {ckpt['phase']} phase, not a stable one")
    shift = ckpt["tokens"] - lr_schedule["decay_start_tokens"]
    if abs(shift) >= batch_size * config.seq_len:  # within a step of it, the branch is the planned start in steps
        log.warning("branching the decay at %d tokens (the manifest's decay starts at %d)",
                    ckpt["tokens"], lr_schedule["decay_start_tokens"])
    return Start("branch", ckpt, path, ckpt["tokens"], lr_schedule["total_tokens"] + shift)


def restore(start: Start, model: torch.nn.Module, optimizer: torch.optim.Optimizer, cuda: bool) -> tuple[int, int]:
    """Load the start checkpoint's weights and optimizer state (and, on a resume, the RNG state);
    returns the (step, tokens) already done."""
    if start.checkpoint is None:
        return 0, 0
    model.load_state_dict(start.checkpoint["model"])
    optimizer.load_state_dict(start.checkpoint["optimizer"])
    if start.kind == "resume":
        torch.set_rng_state(start.checkpoint["rng"]["torch"].cpu())
        if cuda and start.checkpoint["rng"]["cuda"]:
            torch.cuda.set_rng_state_all([state.cpu() for state in start.checkpoint["rng"]["cuda"]])
    return start.checkpoint["step"], start.checkpoint["tokens"]
