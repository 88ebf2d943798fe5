"""The wind tunnel's analysis on a grid and curves whose truth is planted: the held-out width's prediction lands on
its best grid point, the curve law fitted without one decay branch predicts it, and the target's settings come
with intervals that hold the planted values; the decay length is the one the planted curve law favours."""

import math

import pytest
from support.windtunnel_grid import (
    DECAY_FRACTIONS,
    SEQ_LEN,
    TOKENS,
    TRUE_CURVE,
    WARMUP,
    WIDTHS,
    curves,
    grid,
    optimum_batch,
    optimum_lr,
)

from datafactory.trainer.loss_curve import wsd_lrs
from datafactory.trainer.windtunnel_report import TunnelInputs, analyse, report_markdown


@pytest.fixture(scope="module")
def report():
    inputs = TunnelInputs(grid(), curves(), SEQ_LEN, WARMUP, DECAY_FRACTIONS, target_width=2048,
                          target_tokens=1_600_000)
    return analyse(inputs)


def test_the_held_out_width_is_predicted_from_the_others(report):
    validation = report["validation"]
    assert validation["width"] == max(WIDTHS) and validation["tokens"] == max(TOKENS)
    assert 0 <= validation["loss_gap"] < 0.01
    assert abs(validation["loss_error"]) < 0.03
    assert set(validation["by_budget"]) == {str(tokens) for tokens in TOKENS}
    assert validation["unseen_tokens"] == TOKENS[1] and validation["fitted_tokens"] == [TOKENS[0], TOKENS[2]]
    assert validation["curve_mape"] < 0.005 and validation["whole_curve_mape"] < 0.005


def test_the_target_prediction_holds_the_planted_values(report):
    prediction = report["prediction"]
    lr, batch = prediction["peak_lr"], prediction["batch_size"]
    assert lr["low"] <= lr["value"] <= lr["high"]
    assert lr["value"] == pytest.approx(optimum_lr(1_600_000), rel=0.35)
    assert batch["value"] == pytest.approx(optimum_batch(1_600_000), rel=0.35)
    assert prediction["batch_tokens"] == prediction["batch_sequences"] * SEQ_LEN
    truth = 2.0 + 40 / 2048 ** 0.5 + 300 / 1_600_000 ** 0.3
    assert prediction["loss"]["value"] == pytest.approx(truth, rel=0.03)
    assert prediction["warmup_tokens"] == round(WARMUP * 1_600_000)
    assert prediction["steps"] == math.ceil(1_600_000 / prediction["batch_tokens"])


def test_the_decay_length_is_the_one_the_curve_law_favours(report):
    steps = report["decay"]["steps"]
    finals = {fraction: TRUE_CURVE.predict(wsd_lrs(steps, round(WARMUP * steps), round(fraction * steps),
                                                   peak_lr=0.01))[-1] for fraction in DECAY_FRACTIONS}
    chosen = report["prediction"]["decay_fraction"]
    assert finals[chosen] - min(finals.values()) < 0.002  # the planted curve's best, or as good within a hair
    assert finals[chosen] < finals[0.05] - 0.01  # which a fit without the annealing term (C = 0) would miss
    assert report["prediction"]["decay_tokens"] == round(report["prediction"]["decay_fraction"] * 1_600_000)


def test_the_markdown_names_the_headline_numbers(report):
    report = report | {"grid": {"base_width": WIDTHS[0]}, "target_model": "1b",
                       "files": {"trainer": "DIR/windtunnel/trainer.yaml", "policy": "DIR/windtunnel/policy.yaml"}}
    markdown = report_markdown(report)
    assert f"**{report['validation']['loss_gap']:.2%}**" in markdown
    assert f"**{report['validation']['curve_mape']:.2%}**" in markdown
    assert "--config DIR/windtunnel/trainer.yaml" in markdown
