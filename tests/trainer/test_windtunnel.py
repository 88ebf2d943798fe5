"""Wind-tunnel fits on a grid whose truth is known: under μP the optimal learning rate does not move with width
(its fitted exponent's interval holds 0) and falls with tokens as planted; the prediction at a held-out width picks a
grid point within a hair of the best there."""

import math

import numpy as np
import pytest

from datafactory.trainer.windtunnel import ProxyResult, best_per_scale, fit_loss_law, fit_power_law, loss_gap

WIDTHS, TOKENS = (64, 128, 256, 512), (100_000, 200_000, 400_000)  # three budgets: the loss law needs them
LRS = tuple(0.002 * 2 ** (i / 2) for i in range(10))  # half-octave grid, 0.002 .. 0.045
BATCHES = (8, 16, 32)


def optimum_lr(tokens: int) -> float:
    return 0.01 * (tokens / 100_000) ** -0.2  # planted: width-free (μP), falling with tokens


def optimum_batch(tokens: int) -> float:
    return 16 * (tokens / 100_000) ** 0.5


def grid(seed: int = 0) -> list[ProxyResult]:
    rng = np.random.default_rng(seed)
    results = []
    for width in WIDTHS:
        for tokens in TOKENS:
            floor = 2.0 + 40 / width ** 0.5 + 300 / tokens ** 0.3
            for lr in LRS:
                for batch in BATCHES:
                    misfit = math.log(lr / optimum_lr(tokens)) ** 2 + 0.3 * math.log(batch / optimum_batch(tokens)) ** 2
                    results.append(ProxyResult(width, tokens, lr, batch, floor * (1 + 0.02 * misfit)
                                               * (1 + rng.normal(0, 0.001))))
    return results


def test_best_per_scale_and_the_learning_rate_law():
    best = best_per_scale(grid())
    assert [(point.width, point.tokens) for point in best] == [(w, t) for w in WIDTHS for t in TOKENS]
    law = fit_power_law(best, "lr", ["width", "tokens"])
    low, high = law.intervals["width"]
    assert low <= 0.0 <= high and abs(law.exponents["width"]) < 0.1
    assert law.exponents["tokens"] == pytest.approx(-0.2, abs=0.12)
    predicted, low, high = law.predict(width=2048, tokens=1_600_000)
    assert low <= predicted <= high and predicted == pytest.approx(optimum_lr(1_600_000), rel=0.35)


def test_held_out_width_lands_near_its_best_grid_point():
    results = grid()
    held_out = max(WIDTHS)
    seen = [result for result in best_per_scale(results) if result.width < held_out]
    lr = fit_power_law(seen, "lr", ["width", "tokens"]).predict(width=held_out, tokens=max(TOKENS))[0]
    batch = fit_power_law(seen, "batch_size", ["tokens"]).predict(tokens=max(TOKENS))[0]
    at_scale = [result for result in results if (result.width, result.tokens) == (held_out, max(TOKENS))]
    assert loss_gap(at_scale, lr, round(batch)) < 0.01


def test_too_few_scales_are_refused():
    with pytest.raises(ValueError, match="too few"):
        fit_power_law(best_per_scale(grid())[:2], "lr", ["width", "tokens"])
    two_budgets = [point for point in best_per_scale(grid()) if point.tokens != 200_000]
    with pytest.raises(ValueError, match="three distinct tokens"):
        fit_loss_law(two_budgets)


def test_loss_law_extrapolates_to_a_larger_scale():
    law = fit_loss_law(best_per_scale(grid()))
    predicted, low, high = law.predict(width=2048, tokens=1_600_000)
    truth = 2.0 + 40 / 2048 ** 0.5 + 300 / 1_600_000 ** 0.3
    assert low <= predicted <= high
    assert predicted == pytest.approx(truth, rel=0.03)
