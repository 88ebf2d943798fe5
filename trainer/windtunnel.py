"""Wind-tunnel fits: from a grid of proxy runs (width x token budget x learning rate x batch size) to the best setting
per scale, power laws for the optimal learning rate and batch size (log-linear in width and tokens, with bootstrap
intervals), and the validation measure of Step Law: the relative loss of the predicted setting over the best grid
point at a scale the fit never saw."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BOOTSTRAP_SAMPLES = 1000
INTERVAL = (2.5, 97.5)  # percentiles of the bootstrap: a 95% interval


@dataclass(frozen=True)
class ProxyResult:
    """One run's final validation loss at one scale (width, tokens) and setting (lr, batch size); for a fitted
    optimum, lr and batch_size may fall between grid values."""

    width: int
    tokens: int
    lr: float
    batch_size: float
    loss: float


def _vertex(values: Sequence[float], losses: Sequence[float], best: int) -> tuple[float, bool]:
    """The minimum of the parabola in log(value) through the best grid point and its two neighbours, kept between
    those neighbours; at the edge of the grid (or where the three points do not bend upwards) the best grid value,
    flagged as on the edge when it is the first or last."""
    if best in (0, len(values) - 1):
        return values[best], True
    x = np.log(np.asarray(values[best - 1:best + 2], dtype=np.float64))
    curvature, slope, _ = np.polyfit(x, np.asarray(losses[best - 1:best + 2], dtype=np.float64), 2)
    if curvature <= 0:
        return values[best], False
    return float(math.exp(min(max(-slope / (2 * curvature), x[0]), x[2]))), False


@dataclass(frozen=True)
class ScaleOptimum:
    """The optimal setting at one scale (continuous: parabola vertices around the best grid point) and whether
    it sits on the grid's edge, where the true optimum may lie beyond."""

    point: ProxyResult
    lr_on_edge: bool
    batch_on_edge: bool


def scale_optimum(results: Sequence[ProxyResult]) -> ScaleOptimum:
    """Along learning rate at the best batch size, then along batch size at the best learning rate; the loss is
    the best measured one (what the grid can vouch for)."""
    best = min(results, key=lambda result: result.loss)
    lrs = sorted({r.lr for r in results if r.batch_size == best.batch_size})
    by_lr = {r.lr: r.loss for r in results if r.batch_size == best.batch_size}
    batches = sorted({r.batch_size for r in results if r.lr == best.lr})
    by_batch = {r.batch_size: r.loss for r in results if r.lr == best.lr}
    lr, lr_edge = _vertex(lrs, [by_lr[v] for v in lrs], lrs.index(best.lr))
    batch, batch_edge = _vertex(batches, [by_batch[v] for v in batches], batches.index(best.batch_size))
    return ScaleOptimum(ProxyResult(best.width, best.tokens, lr, batch, best.loss), lr_edge, batch_edge)


def optima(results: Sequence[ProxyResult]) -> list[ScaleOptimum]:
    """scale_optimum of every (width, tokens) scale, in (width, tokens) order."""
    scales: dict[tuple[int, int], list[ProxyResult]] = {}
    for result in results:
        scales.setdefault((result.width, result.tokens), []).append(result)
    return [scale_optimum(scales[key]) for key in sorted(scales)]


@dataclass(frozen=True)
class PowerLaw:
    """log y = intercept + sum(exponent[k] * log x[k]), and each exponent's bootstrap interval."""

    target: str
    inputs: tuple[str, ...]
    intercept: float
    exponents: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    samples: np.ndarray  # bootstrap coefficient draws: (samples, 1 + inputs)

    def predict(self, **x: float) -> tuple[float, float, float]:
        """The value at x, with the bootstrap's 95% interval (widened to hold the value: a percentile interval need
        not, and when every resample fits the same line it misses by rounding)."""
        row = np.array([1.0, *(math.log(x[name]) for name in self.inputs)])
        low, high = np.percentile(self.samples @ row, INTERVAL)
        centre = self.intercept + sum(self.exponents[name] * row[i + 1] for i, name in enumerate(self.inputs))
        return math.exp(centre), math.exp(min(low, centre)), math.exp(max(high, centre))


def fit_power_law(points: Sequence[ProxyResult], target: str, inputs: Sequence[str], seed: int = 0,
                  samples: int = BOOTSTRAP_SAMPLES) -> PowerLaw:
    """Least squares in log space over the points (the best run per scale); intervals from resampling the points."""
    design = np.array([[1.0, *(math.log(getattr(point, name)) for name in inputs)] for point in points])
    values = np.log(np.array([getattr(point, target) for point in points], dtype=np.float64))
    if len(points) < design.shape[1]:
        raise ValueError(f"{len(points)} scales cannot fit {target} against {', '.join(inputs)}: too few")
    coefficients = np.linalg.lstsq(design, values, rcond=None)[0]
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(samples):
        chosen = rng.integers(0, len(points), len(points))
        draws.append(np.linalg.lstsq(design[chosen], values[chosen], rcond=None)[0])
    draws = np.array(draws)
    intervals = {name: tuple(float(v) for v in np.percentile(draws[:, i + 1], INTERVAL))
                 for i, name in enumerate(inputs)}
    return PowerLaw(target, tuple(inputs), float(coefficients[0]),
                    {name: float(coefficients[i + 1]) for i, name in enumerate(inputs)}, intervals, draws)


@dataclass(frozen=True)
class LossLaw:
    """L = e + a * (width / width0)^-alpha + b * (tokens / tokens0)^-beta (Chinchilla's form with width for
    parameters; widths and tokens measured from the smallest proxy so the parameters are of one scale), with
    bootstrap draws of the parameters for intervals."""

    params: tuple[float, float, float, float, float]  # e, a, alpha, b, beta
    samples: np.ndarray  # (samples, 5)
    width0: float
    tokens0: float

    def value(self, params: Sequence[float], width: float | np.ndarray, tokens: float | np.ndarray) -> np.ndarray:
        e, a, alpha, b, beta = params
        return e + a * (width / self.width0) ** -alpha + b * (tokens / self.tokens0) ** -beta

    def predict(self, width: float, tokens: float) -> tuple[float, float, float]:
        draws = [float(self.value(params, width, tokens)) for params in self.samples]
        low, high = np.percentile(draws, INTERVAL)
        centre = float(self.value(self.params, width, tokens))
        return centre, min(float(low), centre), max(float(high), centre)


def fit_loss_law(points: Sequence[ProxyResult], seed: int = 0, samples: int = 200) -> LossLaw:
    """Least squares on the best loss per scale; intervals from resampling them. Each exponent needs three distinct
    values of its variable (with two, the floor e and the term trade off freely)."""
    from scipy.optimize import least_squares

    for name in ("width", "tokens"):
        if len({getattr(point, name) for point in points}) < 3:
            raise ValueError(f"the loss law needs at least three distinct {name} values among the scales: too few")
    widths = np.array([point.width for point in points], dtype=np.float64)
    tokens = np.array([point.tokens for point in points], dtype=np.float64)
    losses = np.array([point.loss for point in points], dtype=np.float64)
    shape = LossLaw((0.0,) * 5, np.empty((0, 5)), float(widths.min()), float(tokens.min()))
    spread = max(float(losses.max() - losses.min()), 1e-3)
    start = np.array([float(losses.min()) - spread, spread, 0.5, spread, 0.5])

    def fit(chosen: np.ndarray) -> np.ndarray:
        def residuals(params: np.ndarray) -> np.ndarray:
            return shape.value(params, widths[chosen], tokens[chosen]) - losses[chosen]

        return least_squares(residuals, start, bounds=([0, 0, 0, 0, 0], [np.inf, np.inf, 3, np.inf, 3])).x

    rng = np.random.default_rng(seed)
    draws = np.array([fit(rng.integers(0, len(points), len(points))) for _ in range(samples)])
    return LossLaw(tuple(float(v) for v in fit(np.arange(len(points)))), draws, shape.width0, shape.tokens0)


def loss_gap(results: Sequence[ProxyResult], lr: float, batch_size: int) -> float:
    """Step Law's measure at one scale: the relative loss of the grid point nearest the predicted setting (in log
    learning rate, then log batch size) over the best grid point, as a fraction."""
    best = min(result.loss for result in results)
    nearest = min(results, key=lambda result: (abs(math.log(result.lr / lr)),
                                               abs(math.log(result.batch_size / batch_size))))
    return nearest.loss / best - 1.0
