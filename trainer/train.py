"""Training loop: a manifest (and the anneal manifest its next_phase names) in, a trained checkpoint out.

Runs the stable mixture until the WSD decay starts, checkpoints there (checkpoints/stable-end.pt),
then continues on the anneal mixture while the learning rate decays. Resumes from the latest
checkpoint in out_dir on the same loss trajectory; `anneal_from` branches a decay off a stable checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from datafactory.factory.atomic import atomic_path, write_text_atomic
from datafactory.trainer.data import IGNORE_INDEX, Batch, ManifestLoader, Phase, open_phase
from datafactory.trainer.model import (
    ModelConfig,
    Transformer,
    compile_once,
    flops_per_token,
    load_model_config,
    param_count,
)
from datafactory.trainer.schedule import WSDSchedule

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
STABLE_END = "stable-end.pt"  # the checkpoint where the decay starts: what `anneal_from` branches off
METRICS_FILE = "metrics.jsonl"

# Dense bf16 tensor-core peak FLOP/s by a fragment of torch.cuda.get_device_name(); first match wins.
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("A10", 125e12),
    ("RTX 4090", 165e12),
    ("V100", 125e12),
)


@dataclass
class TrainResult:
    losses: list[float]  # one per step run by this call
    first_loss: float | None
    last_loss: float | None
    start_step: int  # steps already done when this call started (resume / branch)
    steps: int  # steps done in total
    tokens: int  # tokens seen in total
    tokens_per_s: float  # after the first step of this call, which includes compilation
    mfu: float | None
    phase: str  # phase of the last step
    metrics_path: Path
    checkpoint_path: Path | None  # latest checkpoint
    stable_checkpoint_path: Path | None  # checkpoints/stable-end.pt where the decay starts, once reached


# ----------------------------------------------------------------------------- small helpers


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def peak_flops_for(device: torch.device) -> float | None:
    """Dense bf16 peak of a known GPU; None on CPU and on GPUs missing from PEAK_BF16_FLOPS."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for fragment, flops in PEAK_BF16_FLOPS:
        if fragment in name:
            return flops
    log.warning("no peak FLOP/s known for %r: pass peak_flops= to get MFU", name)
    return None


def default_lr(config: ModelConfig) -> float:
    """Peak learning rate by size, after the GPT-3 table (smaller models take larger steps)."""
    params = param_count(config, include_embedding=False)
    return 3e-3 if params < 20e6 else 6e-4 if params < 200e6 else 3e-4 if params < 600e6 else 2e-4


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, device: torch.device):
    """AdamW; matrices decay, norm gains do not; fused kernel on CUDA."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8, fused=device.type == "cuda")


# ----------------------------------------------------------------------------- checkpoints


def checkpoint_steps(out_dir: str | Path) -> list[tuple[int, Path]]:
    folder = Path(out_dir) / CHECKPOINT_DIR
    matches = [(re.fullmatch(r"step-(\d+)\.pt", path.name), path) for path in folder.glob("step-*.pt")]
    return sorted((int(match.group(1)), path) for match, path in matches if match)


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The checkpoint with the most steps in out_dir/checkpoints (half-written temp files are ignored)."""
    steps = checkpoint_steps(out_dir)
    return steps[-1][1] if steps else None


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """torch.save to a temp name, fsync, then rename: a reader never sees a half-written checkpoint."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    return path


def load_checkpoint(path: str | Path, device: torch.device) -> dict[str, Any]:
    return torch.load(path, map_location=device, weights_only=True)


def _prune(out_dir: Path, keep: int) -> None:
    for _, path in checkpoint_steps(out_dir)[:-keep] if keep > 0 else []:
        path.unlink()  # stable-end.pt is a separate link, so the decay-start checkpoint survives


def _link_or_copy(source: Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


# ----------------------------------------------------------------------------- metrics


class Metrics:
    """Accumulates step results on the device and writes one JSONL line (plus a stdout line) per flush,
    so the GPU is synchronised once per log interval, not once per step."""

    def __init__(self, path: Path, sources: list[str], flops_per_token: float, peak_flops: float | None,
                 total_steps: int, resume_step: int | None):
        self.path, self.sources = path, sources
        self.flops, self.peak, self.total_steps = flops_per_token, peak_flops, total_steps
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            path.write_text("")
        else:  # drop lines a killed run wrote past its last checkpoint
            lines = path.read_text().splitlines() if path.exists() else []
            kept = [line for line in lines if line and json.loads(line)["step"] <= resume_step]
            write_text_atomic(path, "".join(line + "\n" for line in kept))
        self.losses: list[float] = []
        self.timed_tokens, self.timed_seconds = 0, 0.0
        self.untimed: tuple[int, float] = (0, 0.0)
        self._reset(time.perf_counter())

    def _reset(self, now: float) -> None:
        self.pending: list[torch.Tensor] = []
        self.grad_norms: list[torch.Tensor] = []
        self.source_sum: torch.Tensor | None = None
        self.source_count: torch.Tensor | None = None
        self.interval_tokens, self.data_wait, self.started = 0, 0.0, now

    def use_sources(self, sources: list[str]) -> None:
        self.sources = sources

    def record(self, loss: torch.Tensor, grad_norm: torch.Tensor, source_sum: torch.Tensor,
               source_count: torch.Tensor, tokens: int, data_wait: float) -> None:
        self.pending.append(loss)
        self.grad_norms.append(grad_norm)
        self.source_sum = source_sum if self.source_sum is None else self.source_sum + source_sum
        self.source_count = source_count if self.source_count is None else self.source_count + source_count
        self.interval_tokens += tokens
        self.data_wait += data_wait

    def flush(self, step: int, phase: str, lr: float, tokens: int, timed: bool = True) -> dict | None:
        if not self.pending:
            return None
        losses = torch.stack(self.pending).float().tolist()  # the one sync per interval
        grad_norm = torch.stack(self.grad_norms).float().mean().item()
        sums, counts = self.source_sum.tolist(), self.source_count.tolist()
        now = time.perf_counter()
        seconds = max(now - self.started, 1e-9)
        rate = self.interval_tokens / seconds
        if timed:
            self.timed_tokens += self.interval_tokens
            self.timed_seconds += seconds
        else:
            self.untimed = (self.interval_tokens, seconds)
        mfu = self.flops * rate / self.peak if self.peak else None
        record = {
            "step": step,
            "phase": phase,
            "lr": lr,
            "loss": sum(losses) / len(losses),
            "loss_per_source": {
                name: total / count for name, total, count in zip(self.sources, sums, counts, strict=True)
                if count
            },
            "tokens": tokens,
            "tokens_per_s": rate,
            "mfu": mfu,
            "grad_norm": grad_norm,
            "data_wait": self.data_wait / seconds,
        }
        self.losses.extend(losses)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        mfu_text = f" | mfu {mfu:6.1%}" if mfu is not None else ""
        print(f"step {step:>6}/{self.total_steps} | {phase:<6} | loss {record['loss']:.4f} | lr {lr:.2e} | "
              f"{rate:>10,.0f} tok/s{mfu_text} | data wait {record['data_wait']:.0%}", flush=True)
        self._reset(time.perf_counter())
        return record

    @property
    def tokens_per_s(self) -> float:
        """Throughput over the timed intervals; a run of one step only has the untimed first one."""
        tokens, seconds = (self.timed_tokens, self.timed_seconds) if self.timed_seconds else self.untimed
        return tokens / seconds if seconds else 0.0


# ----------------------------------------------------------------------------- one step


def token_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every position in fp32 (0 where the target is ignored), shaped like targets."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX,
                           reduction="none").view_as(targets)


def train_step(model: Transformer, optimizer: torch.optim.Optimizer, batch: Batch, lr: float,
               grad_clip: float, n_sources: int, autocast: Any) -> tuple[torch.Tensor, ...]:
    """Forward, backward, clip, AdamW update. Returns (loss, grad norm, per-source loss sums, counts)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast:
        logits = model(batch.inputs, batch.doc_ids)
    # Compiled, the fp32 upcast fuses into the softmax: eager materialises a float copy of the logits (batch x seq
    # x vocab x 4 bytes, 2 GiB at 8 x 2,048 x 32k) and reads it twice more.
    token_loss = (compile_once(token_losses) if model.compiled else token_losses)(logits, batch.targets)
    counted = (batch.targets != IGNORE_INDEX).sum(dim=1)
    loss = token_loss.sum() / counted.sum().clamp(min=1)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    zeros = torch.zeros(n_sources, device=loss.device)
    source_sum = zeros.index_add(0, batch.sources, token_loss.detach().sum(dim=1))
    source_count = zeros.index_add(0, batch.sources, counted.float())
    return loss.detach(), grad_norm.detach(), source_sum, source_count


# ----------------------------------------------------------------------------- where a run starts


def _phases(manifest_path: str | Path, allow_outside_root: bool) -> tuple[Phase | None, Phase | None]:
    """(stable, anneal) from a stable manifest (anneal via next_phase, may be None) or an anneal one."""
    first = open_phase(manifest_path, allow_outside_root=allow_outside_root)
    if first.name == "anneal":
        return None, first
    if first.next_phase is None:
        log.warning("manifest %s names no next_phase: the decay runs on the stable mixture", manifest_path)
        return first, None
    anneal = open_phase(first.next_phase, allow_outside_root=allow_outside_root)
    if anneal.name != "anneal":
        raise ValueError(f"{first.next_phase} is phase {anneal.name!r}, expected 'anneal'")
    if (anneal.seq_len, anneal.tokenizer["sha256"]) != (first.seq_len, first.tokenizer["sha256"]):
        raise ValueError(f"{first.next_phase} uses another seq_len or tokenizer than {manifest_path}")
    if anneal.lr_schedule != first.lr_schedule:
        log.warning("lr_schedule differs between %s and %s; using the stable one",
                    manifest_path, first.next_phase)
    return first, anneal


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
    if shift:
        log.warning("branching the decay at %d tokens (the manifest's decay starts at %d)",
                    ckpt["tokens"], lr_schedule["decay_start_tokens"])
    return Start("branch", ckpt, path, ckpt["tokens"], lr_schedule["total_tokens"] + shift)


def open_loader(start: Start, stable: Phase | None, anneal: Phase | None, batch_size: int,
                **options: Any) -> ManifestLoader:
    """The loader a run starts with: the checkpoint's phase and position, or a fresh one."""
    if start.kind == "resume":
        phase = anneal if start.checkpoint["phase"] == "anneal" else stable
        if phase is None:
            raise ValueError(f"checkpoint {start.path} is in the {start.checkpoint['phase']} phase, "
                             "which the manifest given does not lead to")
        return ManifestLoader(phase, batch_size, state=start.checkpoint["loader"], **options)
    if start.kind == "branch":
        if anneal is None:
            raise ValueError("anneal_from needs the anneal manifest, or a stable one naming it in next_phase")
        return ManifestLoader(anneal, batch_size, inherit=start.checkpoint["loader"], **options)
    return ManifestLoader(stable or anneal, batch_size, **options)


# ----------------------------------------------------------------------------- the loop


def train(
    manifest_path: str | Path,
    model: str | Path | ModelConfig = "test",
    out_dir: str | Path = "runs/train",
    batch_size: int = 8,
    max_steps: int | None = None,
    anneal_from: str | Path | None = None,
    compile: bool = True,
    device: str = "auto",
    peak_flops: float | None = None,
    checkpoint_every: int = 1000,
    *,
    lr: float | None = None,
    min_lr_ratio: float = 0.1,
    weight_decay: float = 0.1,
    grad_clip: float = 1.0,
    log_every: int = 10,
    keep_checkpoints: int = 3,
    prefetch: int = 2,
    allow_outside_root: bool = False,
    on_step: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train on a manifest's mixture with a WSD schedule; see the module docstring for the phases.

    max_steps caps the total step count (a resumed run stops at the same step as an uninterrupted one);
    the schedule always follows the manifest's lr_schedule, so a capped run is a prefix of the full one.
    checkpoint_every=0 saves only at the end (and where the decay starts). `on_step` is called after
    every step with {step, tokens, phase, lr}.
    """
    out_dir, dev = Path(out_dir), pick_device(device)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    stable, anneal = _phases(manifest_path, allow_outside_root)
    first = stable or anneal
    config = load_model_config(model, vocab_size=first.tokenizer["vocab_size"], seq_len=first.seq_len)
    tokens_per_step = batch_size * first.seq_len
    start = find_start(out_dir, anneal_from, first.lr_schedule, config, batch_size, dev)
    decay_start, total_tokens = start.decay_start_tokens, start.total_tokens
    peak_lr = lr if lr is not None else default_lr(config)
    schedule = WSDSchedule(
        peak_lr=peak_lr,
        warmup_tokens=min(first.lr_schedule["warmup_tokens"], decay_start),
        decay_start_tokens=decay_start,
        decay_tokens=first.lr_schedule["decay_tokens"],
        decay_shape=first.lr_schedule["decay_shape"],
        min_ratio=min_lr_ratio,
    )

    # Model, optimizer and data, restored from the checkpoint when there is one.
    torch.manual_seed(first.seed)
    net = Transformer(config).to(dev)
    optimizer = build_optimizer(net, peak_lr, weight_decay, dev)
    step = tokens = 0
    if start.checkpoint is not None:
        net.load_state_dict(start.checkpoint["model"])
        optimizer.load_state_dict(start.checkpoint["optimizer"])
        step, tokens = start.checkpoint["step"], start.checkpoint["tokens"]
    if start.kind == "resume":
        torch.set_rng_state(start.checkpoint["rng"]["torch"].cpu())
        if cuda and start.checkpoint["rng"]["cuda"]:
            torch.cuda.set_rng_state_all([state.cpu() for state in start.checkpoint["rng"]["cuda"]])
    loader_options = {"prefetch": prefetch, "pin_memory": cuda}
    loader = open_loader(start, stable, anneal, batch_size, **loader_options)
    start_step, last_saved = step, (step if start.checkpoint is not None else -1)
    start.checkpoint = None  # free the checkpoint's tensors

    if compile:
        net.compile_layers()
    compile_pending = compile
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    total_steps = step + math.ceil(max(total_tokens - tokens, 0) / tokens_per_step)
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    peak = peak_flops if peak_flops is not None else peak_flops_for(dev)
    metrics = Metrics(out_dir / METRICS_FILE, loader.phase.source_names, flops_per_token(config), peak,
                      total_steps, resume_step=step if start.kind == "resume" else None)
    ckpt_dir = out_dir / CHECKPOINT_DIR
    stable_end = ckpt_dir / STABLE_END
    lr_now = schedule(tokens)
    log.info("%.1fM parameters, %s attention, %d tokens/step, steps %d -> %d (%s)", param_count(config) / 1e6,
             net.attention_backend(dev), tokens_per_step, step, total_steps, start.kind)

    def checkpoint() -> Path:
        nonlocal last_saved
        metrics.flush(step, loader.phase.name, lr_now, tokens)  # metrics never lag a checkpoint
        state = {
            "step": step,
            "tokens": tokens,
            "phase": loader.phase.name,
            "model": net.state_dict(),
            "optimizer": optimizer.state_dict(),
            "loader": loader.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if cuda else []},
            "run": {"model_config": dataclasses.asdict(config), "batch_size": batch_size,
                    "decay_start_tokens": decay_start, "total_tokens": total_tokens, "peak_lr": peak_lr,
                    "manifest": str(manifest_path)},
        }
        path = save_checkpoint(ckpt_dir / f"step-{step:08d}.pt", state)
        last_saved = step
        _prune(out_dir, keep_checkpoints)
        return path

    decay_reached = False
    try:
        while True:
            # Where the decay starts: keep that checkpoint, and switch to the anneal mixture.
            if loader.phase.name == "stable" and tokens >= decay_start and not decay_reached:
                decay_reached = True
                if not stable_end.exists():
                    saved = ckpt_dir / f"step-{step:08d}.pt" if last_saved == step else checkpoint()
                    _link_or_copy(saved, stable_end)
                if anneal is not None:
                    metrics.flush(step, loader.phase.name, lr_now, tokens)
                    previous = loader.state_dict()
                    loader.close()
                    loader = ManifestLoader(anneal, batch_size, inherit=previous, **loader_options)
                    metrics.use_sources(anneal.source_names)
            if tokens >= total_tokens or (max_steps is not None and step >= max_steps):
                break

            waited = time.perf_counter()
            batch = next(loader).to(dev)
            waited = time.perf_counter() - waited
            lr_now = schedule(tokens + tokens_per_step)
            step_args = (net, optimizer, batch, lr_now, grad_clip, len(loader.phase.sources), autocast)
            try:
                result = train_step(*step_args)
            except Exception as err:
                if not compile_pending:
                    raise
                log.warning("torch.compile failed on %s (%s: %s); continuing in eager mode",
                            dev.type, type(err).__name__, (str(err).splitlines() or [""])[0])
                net.uncompile_layers()
                optimizer.zero_grad(set_to_none=True)
                result = train_step(*step_args)
            compile_pending = False
            step += 1
            tokens += tokens_per_step
            metrics.record(*result, tokens=tokens_per_step, data_wait=waited)
            if on_step is not None:
                on_step({"step": step, "tokens": tokens, "phase": loader.phase.name, "lr": lr_now})
            if step == start_step + 1:  # the first step carries compilation: log it, keep it out of tokens/s
                metrics.flush(step, loader.phase.name, lr_now, tokens, timed=False)
            elif step % log_every == 0:
                metrics.flush(step, loader.phase.name, lr_now, tokens)
            if checkpoint_every and step % checkpoint_every == 0:
                checkpoint()
        metrics.flush(step, loader.phase.name, lr_now, tokens)
        if last_saved != step:
            checkpoint()
    finally:
        loader.close()

    tokens_per_s, losses = metrics.tokens_per_s, metrics.losses
    return TrainResult(
        losses=losses,
        first_loss=losses[0] if losses else None,
        last_loss=losses[-1] if losses else None,
        start_step=start_step,
        steps=step,
        tokens=tokens,
        tokens_per_s=tokens_per_s,
        mfu=flops_per_token(config) * tokens_per_s / peak if peak and tokens_per_s else None,
        phase=loader.phase.name,
        metrics_path=metrics.path,
        checkpoint_path=latest_checkpoint(out_dir),
        stable_checkpoint_path=stable_end if stable_end.exists() else None,
    )
