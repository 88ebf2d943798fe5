"""The loss curve as a function of the learning-rate schedule (Tissue et al. 2024, "Scaling Law with Learning Rate
Annealing"): L(s) = L0 + A * S1(s)^-alpha - C * S2(s), where S1 sums the learning rates so far (the forward area)
and S2 the annealing momentum (the drops in learning rate, each decayed by lambda per step; warmup rises left out).
Fitted on one or two runs of a WSD schedule, it predicts the loss under another decay: how the wind tunnel picks one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import least_squares

from datafactory.trainer.schedule import WSDSchedule

ANNEAL_MOMENTUM = 0.999  # the paper's lambda: how long a drop in learning rate keeps lowering the loss


def schedule_areas(lrs: np.ndarray, momentum: float = ANNEAL_MOMENTUM) -> tuple[np.ndarray, np.ndarray]:
    """S1 and S2 after every step of a schedule (lrs: the learning rate of each step, peak-normalised or not)."""
    lrs = np.asarray(lrs, dtype=np.float64)
    # eta_{i-1} - eta_i, 0 at the first step; the warmup's rises are not negative annealing (they would otherwise
    # carry a negative momentum through the whole stable phase)
    drops = np.maximum(-np.diff(lrs, prepend=lrs[:1]), 0.0)
    velocity = np.empty_like(lrs)
    carried = 0.0
    for i, drop in enumerate(drops):
        carried = carried * momentum + drop
        velocity[i] = carried
    return np.cumsum(lrs), np.cumsum(velocity)


@dataclass(frozen=True)
class LossCurveLaw:
    l0: float
    a: float
    alpha: float
    c: float
    momentum: float = ANNEAL_MOMENTUM

    def predict(self, lrs: np.ndarray) -> np.ndarray:
        """The loss after every step of a schedule."""
        s1, s2 = schedule_areas(lrs, self.momentum)
        return self.l0 + self.a * np.power(np.maximum(s1, 1e-12), -self.alpha) - self.c * s2

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def fit_loss_curve(runs: list[tuple[np.ndarray, np.ndarray]], skip: int | Sequence[int] = 0,
                   momentum: float = ANNEAL_MOMENTUM) -> LossCurveLaw:
    """Least squares on log-free residuals over every (schedule, losses) run, the first `skip` steps of each (or
    skip[i] of run i) left out (warmup noise, or a stretch another run already covers); parameters kept physical
    (L0, A, alpha, C >= 0)."""
    skips = [skip] * len(runs) if isinstance(skip, int) else list(skip)
    areas = [(schedule_areas(lrs, momentum), np.asarray(losses, dtype=np.float64)) for lrs, losses in runs]

    def residuals(params: np.ndarray) -> np.ndarray:
        l0, a, alpha, c = params
        parts = [(l0 + a * np.power(np.maximum(s1, 1e-12), -alpha) - c * s2 - losses)[first:]
                 for ((s1, s2), losses), first in zip(areas, skips, strict=True)]
        return np.concatenate(parts)

    last = min(float(losses[-1]) for _, losses in areas)
    first = max(float(losses[min(start, len(losses) - 1)]) for (_, losses), start in zip(areas, skips, strict=True))
    start = np.array([last * 0.9, max(first - last, 1e-3), 0.5, 0.0])
    fitted = least_squares(residuals, start, bounds=([0.0, 0.0, 0.0, 0.0], [np.inf, np.inf, 5.0, np.inf]))
    l0, a, alpha, c = fitted.x
    return LossCurveLaw(float(l0), float(a), float(alpha), float(c), momentum)


def wsd_lrs(steps: int, warmup_steps: int, decay_steps: int, peak_lr: float = 1.0, shape: str = "linear",
            min_ratio: float = 0.1) -> np.ndarray:
    """The learning rate of every step of a WSD run counted in steps (the trainer's schedule with one token per
    step): what the law is asked about when it compares decay lengths."""
    schedule = WSDSchedule(peak_lr, min(warmup_steps, steps - decay_steps), steps - decay_steps, decay_steps, shape,
                           min_ratio)
    return np.array([schedule(step + 1) for step in range(steps)])


def block_means(values: np.ndarray, size: int) -> np.ndarray:
    """Means of consecutive `size`-step blocks (a ragged tail dropped): one step's loss is noisier than the law's
    error, so curves are compared block by block."""
    values = np.asarray(values, dtype=np.float64)
    kept = len(values) // size * size
    return values[:kept].reshape(-1, size).mean(axis=1)


def mape(predicted: np.ndarray, measured: np.ndarray) -> float:
    """Mean absolute percentage error, as a fraction."""
    measured = np.asarray(measured, dtype=np.float64)
    return float(np.mean(np.abs(np.asarray(predicted) - measured) / np.abs(measured)))
