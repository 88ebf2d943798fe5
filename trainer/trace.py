"""What training saw, kept for the factory: every step's loss, grad norm and LR (with spikes flagged against a
robust running statistic), and the loss of each document segment in a sample of every batch's rows (every row of a
spike step), with the shard row it came from. Parquet under RUN/trace/, written every 100 steps and at every
checkpoint, resumable."""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from datafactory.factory.atomic import atomic_path

TRACE_DIR = "trace"
MAD_TO_SIGMA = 1.4826  # a normal distribution's standard deviation is 1.4826 x its median absolute deviation
STEPS_SCHEMA = pa.schema([("step", pa.int64()), ("phase", pa.string()), ("tokens", pa.int64()),
                          ("loss", pa.float64()), ("grad_norm", pa.float64()), ("lr", pa.float64()),
                          ("spike", pa.bool_())])
SEGMENTS_SCHEMA = pa.schema([
    ("step", pa.int64()), ("shard", pa.string()), ("row", pa.int64()),
    ("start", pa.int32()),  # the segment's first position in the row
    ("position", pa.int64()),  # row x (seq_len + 1) + start: where the tokenize view's first_row and offset point
    ("tokens", pa.int32()), ("loss", pa.float64()),  # mean loss over the segment's predicted tokens
])
_FILE = re.compile(r"(steps|segments)-(\d+)-(\d+)\.parquet")


@dataclass(frozen=True)
class TraceSettings:
    """rows_per_step rows of every batch are kept (all rows of a spike step); a step is a spike when its loss or
    grad norm exceeds the median of the last `window` steps by more than k robust standard deviations."""

    rows_per_step: int = 8
    window: int = 100
    k: float = 6.0
    min_history: int = 20  # no spike is called before this many steps are known
    flush_steps: int = 100  # steps gathered (on the device) before a write; checkpoints always write


DEFAULT_TRACE = TraceSettings()


def segment_stats(token_loss: torch.Tensor, targets_counted: torch.Tensor, doc_ids: torch.Tensor
                  ) -> torch.Tensor:
    """Per row and document segment (the row's doc_ids): loss sum, counted tokens and first position, stacked as
    (3, rows, seq_len) on the device; a segment index the row does not use has a count of 0."""
    index = doc_ids.long()
    sums = torch.zeros_like(token_loss).scatter_add_(1, index, token_loss)
    counts = torch.zeros_like(token_loss).scatter_add_(1, index, targets_counted.float())
    positions = torch.arange(index.shape[1], device=index.device, dtype=token_loss.dtype).expand_as(token_loss)
    starts = torch.full_like(token_loss, float(index.shape[1])).scatter_reduce_(1, index, positions, "amin")
    return torch.stack([sums, counts, starts])


def spike_limit(history: deque, settings: TraceSettings) -> float:
    """The value above which a step is a spike: median + k robust standard deviations of the history (infinite
    until min_history steps are known)."""
    if len(history) < settings.min_history:
        return float("inf")
    values = np.fromiter(history, dtype=np.float64)
    median = float(np.median(values))
    spread = MAD_TO_SIGMA * float(np.median(np.abs(values - median)))
    # a flat history (spread 0) still needs a real jump: at least 0.1% of the median per k
    return median + settings.k * max(spread, 1e-3 * abs(median), 1e-12)


class Tracer:
    """Holds each step's results on the device until `flush`, which synchronises once, calls spikes (each step
    against the steps before it), keeps the sampled rows' segments and writes one steps file and one segments file
    for the steps since the last written one."""

    def __init__(self, directory: Path, settings: TraceSettings, width: int, resume_step: int | None) -> None:
        self.directory, self.settings, self.width = directory, settings, width
        self.pending: list[tuple] = []
        self.losses: deque = deque(maxlen=settings.window)
        self.grad_norms: deque = deque(maxlen=settings.window)
        directory.mkdir(parents=True, exist_ok=True)
        for path in directory.glob("*.parquet"):  # a fresh run starts empty; a resumed one drops what came after
            match = _FILE.fullmatch(path.name)
            if resume_step is None or (match and int(match.group(2)) > resume_step):
                path.unlink()
        if resume_step is not None:
            self._reload_history(resume_step)

    def _reload_history(self, resume_step: int) -> None:
        files = sorted(self.directory.glob("steps-*.parquet"))
        if files:
            table = pa.concat_tables([pq.read_table(path) for path in files])
            for row in table.sort_by("step").to_pylist()[-self.settings.window:]:
                if row["step"] <= resume_step and not row["spike"]:
                    self.losses.append(row["loss"])
                    self.grad_norms.append(row["grad_norm"])

    def record(self, step: int, phase: str, tokens: int, lr: float, loss: torch.Tensor, grad_norm: torch.Tensor,
               segments: torch.Tensor, origins: list[tuple[str, int]]) -> None:
        self.pending.append((step, phase, tokens, lr, loss, grad_norm, segments, origins))

    def flush(self, force: bool = False) -> None:
        """Write the pending steps once `flush_steps` have gathered (at every checkpoint and at the end: `force`)."""
        if not self.pending or (len(self.pending) < self.settings.flush_steps and not force):
            return
        losses = torch.stack([entry[4] for entry in self.pending]).double().cpu().numpy()
        norms = torch.stack([entry[5] for entry in self.pending]).double().cpu().numpy()
        spikes = np.zeros(len(self.pending), dtype=bool)
        for i, (loss, norm) in enumerate(zip(losses.tolist(), norms.tolist(), strict=True)):
            spikes[i] = not (loss <= spike_limit(self.losses, self.settings)
                             and norm <= spike_limit(self.grad_norms, self.settings))  # NaN is a spike too
            if not spikes[i]:  # a spike stays out of the statistic it is judged against
                self.losses.append(loss)
                self.grad_norms.append(norm)
        steps = {"step": [], "phase": [], "tokens": [], "lr": []}
        segments = []
        for (step, phase, tokens, lr, _, _, stats, origins), spike in zip(self.pending, spikes, strict=True):
            for name, value in zip(steps, (step, phase, tokens, lr), strict=True):
                steps[name].append(value)
            rows = len(origins) if spike else min(self.settings.rows_per_step, len(origins))
            segments.append(self._segments(step, stats[:, :rows].cpu().numpy(), origins[:rows]))
        steps |= {"loss": losses, "grad_norm": norms, "spike": spikes}
        first, last = self.pending[0][0], self.pending[-1][0]
        self._write("steps", first, last, pa.table(steps, schema=STEPS_SCHEMA))
        self._write("segments", first, last, pa.concat_tables(segments))
        self.pending = []

    def _segments(self, step: int, stats: np.ndarray, origins: list[tuple[str, int]]) -> pa.Table:
        """The used segments of the kept rows of one step, as arrays."""
        sums, counts, starts = stats
        rows, segments = np.nonzero(counts > 0)
        shard_rows = np.array([row for _, row in origins], dtype=np.int64)[rows]
        start = starts[rows, segments].astype(np.int32)
        return pa.table({
            "step": np.full(len(rows), step, dtype=np.int64),
            "shard": [origins[row][0] for row in rows.tolist()],
            "row": shard_rows, "start": start, "position": shard_rows * self.width + start,
            "tokens": counts[rows, segments].astype(np.int32),
            "loss": (sums[rows, segments] / counts[rows, segments]).astype(np.float64),
        }, schema=SEGMENTS_SCHEMA)

    def _write(self, kind: str, first: int, last: int, table: pa.Table) -> None:
        with atomic_path(self.directory / f"{kind}-{first:09d}-{last:09d}.parquet") as tmp:
            pq.write_table(table, tmp, compression="zstd")


def read_steps(run_dir: str | Path) -> pa.Table:
    """Every traced step of a run (RUN/trace/steps-*.parquet), in step order; empty when it traced none."""
    files = sorted((Path(run_dir) / TRACE_DIR).glob("steps-*.parquet"))
    if not files:
        return STEPS_SCHEMA.empty_table()
    return pa.concat_tables([pq.read_table(path) for path in files]).sort_by("step")
