"""Training metrics: one JSONL line (and one stdout line) per log interval with loss, loss per source,
tokens/s and MFU against the device's dense bf16 peak."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from datafactory.factory.atomic import write_text_atomic

log = logging.getLogger(__name__)

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


class Metrics:
    """Accumulates step results on the device and writes one JSONL line (plus a stdout line) per flush,
    so the GPU is synchronised once per log interval, not once per step."""

    def __init__(self, path: Path, sources: list[str], flops_per_token: float, peak_flops: float | None,
                 total_steps: int, resume_step: int | None) -> None:
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
        """Name the per-source losses after another phase's sources (from the next flush on)."""
        self.sources = sources

    def record(self, loss: torch.Tensor, grad_norm: torch.Tensor, source_sum: torch.Tensor,
               source_count: torch.Tensor, tokens: int, data_wait: float) -> None:
        """Add one step's results (device tensors, not read back here) to the current interval."""
        self.pending.append(loss)
        self.grad_norms.append(grad_norm)
        self.source_sum = source_sum if self.source_sum is None else self.source_sum + source_sum
        self.source_count = source_count if self.source_count is None else self.source_count + source_count
        self.interval_tokens += tokens
        self.data_wait += data_wait

    def flush(self, step: int, phase: str, lr: float, tokens: int, timed: bool = True) -> dict | None:
        """Write the interval's line and start the next; None if no step was recorded since the last flush.
        timed=False keeps the interval out of tokens_per_s (the first step carries compilation)."""
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

    @property
    def mfu(self) -> float | None:
        """Model FLOPs utilisation over the whole run (tokens_per_s); None without a known peak."""
        tokens_per_s = self.tokens_per_s
        return self.flops * tokens_per_s / self.peak if self.peak and tokens_per_s else None
