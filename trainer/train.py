"""The training loop: a manifest (and the anneal manifest its next_phase names) in, a trained checkpoint out.
Checkpoints are handled in checkpoints.py, the metrics log in metrics.py."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from datafactory.trainer.checkpoints import (
    Start,
    find_start,
    latest_checkpoint,
    link_or_copy,
    restore,
    save_step,
    stable_end_path,
    step_path,
    training_state,
)
from datafactory.trainer.data import IGNORE_INDEX, Batch, ManifestLoader, Phase, open_phase
from datafactory.trainer.metrics import METRICS_FILE, Metrics, peak_flops_for
from datafactory.trainer.model import (
    ModelConfig,
    Transformer,
    compile_once,
    flops_per_token,
    load_model_config,
    param_count,
)
from datafactory.trainer.schedule import WSDSchedule
from datafactory.trainer.trace import DEFAULT_TRACE, TRACE_DIR, Tracer, TraceSettings, segment_stats

log = logging.getLogger(__name__)


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


def default_lr(config: ModelConfig) -> float:
    """Peak learning rate by size, after the GPT-3 table (smaller models take larger steps)."""
    params = param_count(config, include_embedding=False)
    return 3e-3 if params < 20e6 else 6e-4 if params < 200e6 else 3e-4 if params < 600e6 else 2e-4


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float,
                    device: torch.device) -> torch.optim.AdamW:
    """AdamW; matrices decay, norm gains do not; fused kernel on CUDA. Under μP (model.config.mup_base_dim) the
    hidden matrices learn at lr / width_mult (their group's `lr_scale`), embeddings and norms at lr."""
    params = [p for p in model.parameters() if p.requires_grad]
    matrices = [p for p in params if p.dim() >= 2]
    vectors = [p for p in params if p.dim() < 2]
    config = getattr(model, "config", None)
    if config is not None and config.mup_base_dim:
        hidden = {id(p) for p in model.hidden_matrices()}
        groups = [
            {"params": [p for p in matrices if id(p) in hidden], "weight_decay": weight_decay,
             "lr_scale": 1.0 / config.width_mult},
            {"params": [p for p in matrices if id(p) not in hidden], "weight_decay": weight_decay, "lr_scale": 1.0},
            {"params": vectors, "weight_decay": 0.0, "lr_scale": 1.0},
        ]
    else:
        groups = [{"params": matrices, "weight_decay": weight_decay}, {"params": vectors, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8, fused=device.type == "cuda")


def scaled_lr(group: dict, lr: float) -> float:
    """The learning rate of one parameter group at schedule value lr (μP's per-group scale, else lr)."""
    return lr * group.get("lr_scale", 1.0)


# ----------------------------------------------------------------------------- one step


def token_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every position in fp32 (0 where the target is ignored), shaped like targets."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX,
                           reduction="none").view_as(targets)


def train_step(model: Transformer, optimizer: torch.optim.Optimizer, batch: Batch, lr: float, grad_clip: float,
               n_sources: int, autocast: Any, traced: bool = False) -> tuple[torch.Tensor | None, ...]:
    """Forward, backward, clip, AdamW update. Returns (loss, grad norm, per-source loss sums, counts, and with
    `traced` the per-segment statistics of every row, else None)."""
    for group in optimizer.param_groups:
        group["lr"] = scaled_lr(group, lr)
    with autocast:
        logits = model(batch.inputs, batch.doc_ids)
    # Compiled, the fp32 upcast fuses into the softmax: eager materialises a float copy of the logits (batch x seq
    # x vocab x 4 bytes, 2 GiB at 8 x 2,048 x 32k) and reads it twice more.
    token_loss = (compile_once(token_losses) if model.compiled else token_losses)(logits, batch.targets)
    counted_tokens = batch.targets != IGNORE_INDEX
    counted = counted_tokens.sum(dim=1)
    loss = token_loss.sum() / counted.sum().clamp(min=1)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    zeros = torch.zeros(n_sources, device=loss.device)
    source_sum = zeros.index_add(0, batch.sources, token_loss.detach().sum(dim=1))
    source_count = zeros.index_add(0, batch.sources, counted.float())
    segments = segment_stats(token_loss.detach(), counted_tokens, batch.doc_ids) if traced else None
    return loss.detach(), grad_norm.detach(), source_sum, source_count, segments


def _step_or_eager(model: Transformer, optimizer: torch.optim.Optimizer, batch: Batch, lr: float,
                   grad_clip: float, n_sources: int, autocast: Any, eager_fallback: bool, traced: bool
                   ) -> tuple[torch.Tensor | None, ...]:
    """train_step; with eager_fallback (the first compiled step), a torch.compile failure drops the model
    to eager mode and retries, since compilation is a speed-up, not something the run depends on."""
    step_args = (model, optimizer, batch, lr, grad_clip, n_sources, autocast, traced)
    try:
        return train_step(*step_args)
    except Exception as err:
        if not eager_fallback:
            raise
        log.warning("torch.compile failed on %s (%s: %s); continuing in eager mode",
                    batch.inputs.device.type, type(err).__name__, (str(err).splitlines() or [""])[0])
        model.uncompile_layers()
        optimizer.zero_grad(set_to_none=True)
        return train_step(*step_args)


def _next_batch(loader: ManifestLoader, device: torch.device) -> tuple[Batch, float]:
    """The next batch on the device, and the seconds spent waiting for it."""
    started = time.perf_counter()
    batch = next(loader).to(device)
    return batch, time.perf_counter() - started


# ----------------------------------------------------------------------------- set-up


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


def _schedule(lr_schedule: dict, start: Start, peak_lr: float, min_lr_ratio: float) -> WSDSchedule:
    """The manifest's WSD schedule, with the decay starting where `start` puts it (a branch moves it)."""
    return WSDSchedule(
        peak_lr=peak_lr,
        warmup_tokens=min(lr_schedule["warmup_tokens"], start.decay_start_tokens),
        decay_start_tokens=start.decay_start_tokens,
        decay_tokens=lr_schedule["decay_tokens"],
        decay_shape=lr_schedule["decay_shape"],
        min_ratio=min_lr_ratio,
    )


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


def _anneal_loader(loader: ManifestLoader, anneal: Phase, batch_size: int, options: dict[str, Any]) -> ManifestLoader:
    """Close the stable loader and open the anneal one, which inherits its state."""
    previous = loader.state_dict()
    loader.close()
    return ManifestLoader(anneal, batch_size, inherit=previous, **options)


def _total_steps(step: int, tokens: int, total_tokens: int, tokens_per_step: int, max_steps: int | None) -> int:
    """The step the run stops at: where the schedule's tokens run out, or max_steps if that comes first."""
    total = step + math.ceil(max(total_tokens - tokens, 0) / tokens_per_step)
    return total if max_steps is None else min(total, max_steps)


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
    trace: TraceSettings | None = DEFAULT_TRACE,
) -> TrainResult:
    """Train on a manifest's mixture with a WSD schedule.

    Runs the stable mixture until the WSD decay starts, checkpoints there (checkpoints/stable-end.pt),
    then continues on the anneal mixture while the learning rate decays. Resumes from the latest
    checkpoint in out_dir on the same loss trajectory; `anneal_from` branches a decay off a stable checkpoint.

    max_steps caps the total step count (a resumed run stops at the same step as an uninterrupted one);
    the schedule always follows the manifest's lr_schedule, so a capped run is a prefix of the full one.
    checkpoint_every=0 saves only at the end (and where the decay starts). `on_step` is called after
    every step with {step, tokens, phase, lr}. `trace` records, under out_dir/trace/, every step and the loss of
    each document segment in a sample of rows (all rows of a spike step): `factory trace` maps them to documents.
    """
    # Set-up: the phases, the model, where the run starts and the schedule it follows.
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
    schedule = _schedule(first.lr_schedule, start, peak_lr, min_lr_ratio)

    # Model, optimizer and data, restored from the checkpoint when there is one.
    torch.manual_seed(first.seed)
    net = Transformer(config).to(dev)
    optimizer = build_optimizer(net, peak_lr, weight_decay, dev)
    step, tokens = restore(start, net, optimizer, cuda)
    loader_options = {"prefetch": prefetch, "pin_memory": cuda}
    loader = open_loader(start, stable, anneal, batch_size, **loader_options)
    start_step, last_saved = step, (step if start.checkpoint is not None else -1)
    start.checkpoint = None  # free the checkpoint's tensors

    if compile:
        net.compile_layers()
    compile_pending = compile
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    total_steps = _total_steps(step, tokens, total_tokens, tokens_per_step, max_steps)
    peak = peak_flops if peak_flops is not None else peak_flops_for(dev)
    resume_step = step if start.kind == "resume" else None
    metrics = Metrics(out_dir / METRICS_FILE, loader.phase.source_names, flops_per_token(config), peak,
                      total_steps, resume_step=resume_step)
    tracer = Tracer(out_dir / TRACE_DIR, trace, first.seq_len + 1, resume_step) if trace is not None else None
    # What a resume must match and keep: saved in every checkpoint, checked by find_start.
    run_settings = {"model_config": dataclasses.asdict(config), "batch_size": batch_size,
                    "decay_start_tokens": decay_start, "total_tokens": total_tokens, "peak_lr": peak_lr,
                    "manifest": str(manifest_path)}
    stable_end = stable_end_path(out_dir)
    lr_now = schedule(tokens)
    log.info("%.1fM parameters, %s attention, %d tokens/step, steps %d -> %d (%s)", param_count(config) / 1e6,
             net.attention_backend(dev), tokens_per_step, step, total_steps, start.kind)

    def flush(timed: bool = True, force: bool = False) -> None:
        metrics.flush(step, loader.phase.name, lr_now, tokens, timed=timed)
        if tracer is not None:
            tracer.flush(force)

    def checkpoint() -> Path:
        nonlocal last_saved
        flush(force=True)  # metrics and traces never lag a checkpoint
        state = training_state(step, tokens, net, optimizer, loader, run_settings, cuda)
        path = save_step(out_dir, state, keep_checkpoints)
        last_saved = step
        return path

    decay_reached = False
    try:
        while True:
            # Where the decay starts: keep that checkpoint, and switch to the anneal mixture.
            if loader.phase.name == "stable" and tokens >= decay_start and not decay_reached:
                decay_reached = True
                if not stable_end.exists():
                    saved = step_path(out_dir, step) if last_saved == step else checkpoint()
                    link_or_copy(saved, stable_end)
                if anneal is not None:
                    flush(force=True)
                    loader = _anneal_loader(loader, anneal, batch_size, loader_options)
                    metrics.use_sources(anneal.source_names)
            if tokens >= total_tokens or (max_steps is not None and step >= max_steps):
                break

            batch, waited = _next_batch(loader, dev)
            lr_now = schedule(tokens + tokens_per_step)
            *result, segments = _step_or_eager(net, optimizer, batch, lr_now, grad_clip, len(loader.phase.sources),
                                               autocast, eager_fallback=compile_pending, traced=tracer is not None)
            compile_pending = False
            step += 1
            tokens += tokens_per_step
            metrics.record(*result, tokens=tokens_per_step, data_wait=waited)
            if tracer is not None:
                tracer.record(step, loader.phase.name, tokens, lr_now, result[0], result[1], segments, batch.origins)
            if on_step is not None:
                on_step({"step": step, "tokens": tokens, "phase": loader.phase.name, "lr": lr_now})
            if step == start_step + 1:  # the first step carries compilation: log it, keep it out of tokens/s
                flush(timed=False)
            elif step % log_every == 0:
                flush()
            if checkpoint_every and step % checkpoint_every == 0:
                checkpoint()
        flush(force=True)
        if last_saved != step:
            checkpoint()
    finally:
        loader.close()

    losses = metrics.losses
    return TrainResult(
        losses=losses,
        first_loss=losses[0] if losses else None,
        last_loss=losses[-1] if losses else None,
        start_step=start_step,
        steps=step,
        tokens=tokens,
        tokens_per_s=metrics.tokens_per_s,
        mfu=metrics.mfu,
        phase=loader.phase.name,
        metrics_path=metrics.path,
        checkpoint_path=latest_checkpoint(out_dir),
        stable_checkpoint_path=stable_end if stable_end.exists() else None,
    )
