"""Wind-tunnel fits on a grid whose truth is known: under μP the optimal learning rate does not move with width
(its fitted exponent's interval holds 0) and falls with tokens as planted; the optimum per scale lies between grid
points where the parabola puts it; the prediction at a held-out width picks a grid point within a hair of the best."""

import math

import pytest
from support.windtunnel_grid import TOKENS, WIDTHS, grid, optimum_lr

from datafactory.trainer.windtunnel import (
    ProxyResult,
    fit_loss_law,
    fit_power_law,
    loss_gap,
    optima,
    scale_optimum,
)


def best_per_scale(results: list[ProxyResult]) -> list[ProxyResult]:
    return [optimum.point for optimum in optima(results)]


def test_the_optimum_between_grid_points_and_on_the_edge():
    lrs = (0.005, 0.01, 0.02, 0.04)
    at = [ProxyResult(64, 1000, lr, batch, 3.0 + math.log(lr / 0.014) ** 2 + 0.1 * math.log(batch / 16) ** 2)
          for lr in lrs for batch in (4, 8, 16)]
    found = scale_optimum(at)
    assert found.point.lr == pytest.approx(0.014, rel=1e-6)  # an exact parabola in log lr: its vertex
    assert found.point.batch_size == 16 and found.batch_on_edge and not found.lr_on_edge
    assert found.point.loss == min(result.loss for result in at)  # the loss the grid measured, not extrapolated


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
