"""From a wind-tunnel grid's results to its report: the validation at the held-out width (predicted from the
narrower proxies, then measured), the laws refitted on every width, and the prediction for the target run."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from datafactory.trainer.loss_curve import block_means, fit_loss_curve, mape, wsd_lrs
from datafactory.trainer.windtunnel import (
    LossLaw,
    PowerLaw,
    ProxyResult,
    fit_loss_law,
    fit_power_law,
    loss_gap,
    optima,
)

CURVE_SKIP = 0.1  # share of the longest curve's first steps (warmup, the steep start) the curve law does not fit
CURVE_BLOCKS = 10  # curves are compared as means of this many blocks of steps


@dataclass(frozen=True)
class Curve:
    """The per-step learning rate and training loss of one decay branch: its trunk prefix, then its decay."""

    width: int
    lr: float
    batch_size: int
    tokens: int
    decay_start_step: int
    lrs: np.ndarray
    losses: np.ndarray


@dataclass(frozen=True)
class TunnelInputs:
    results: list[ProxyResult]
    curves: list[Curve]
    seq_len: int
    warmup_fraction: float
    decay_fractions: list[float]
    target_width: int
    target_tokens: int
    seed: int = 0


@dataclass(frozen=True)
class Laws:
    lr: PowerLaw  # optimal peak lr vs width and tokens
    batch_size: PowerLaw  # optimal batch size (sequences) vs tokens
    batch_vs_loss: PowerLaw  # optimal batch size vs the loss reached
    loss: LossLaw  # best loss vs width and tokens


def fit_laws(points: Sequence[ProxyResult], seed: int) -> Laws:
    return Laws(fit_power_law(points, "lr", ["width", "tokens"], seed), fit_power_law(points, "batch_size",
                ["tokens"], seed), fit_power_law(points, "batch_size", ["loss"], seed), fit_loss_law(points, seed))


def interval(value: float, low: float, high: float) -> dict[str, float]:
    return {"value": value, "low": low, "high": high}


def power_law_dict(law: PowerLaw) -> dict:
    return {"target": law.target, "intercept": law.intercept, "exponents": law.exponents,
            "intervals": {name: list(bounds) for name, bounds in law.intervals.items()}}


def laws_dict(laws: Laws) -> dict:
    e, a, alpha, b, beta = laws.loss.params
    return {"lr": power_law_dict(laws.lr), "batch_size": power_law_dict(laws.batch_size),
            "batch_size_vs_loss": power_law_dict(laws.batch_vs_loss),
            "loss": {"e": e, "a": a, "alpha": alpha, "b": b, "beta": beta, "width0": laws.loss.width0,
                     "tokens0": laws.loss.tokens0}}


# ----------------------------------------------------------------------------- validation at the held-out width


def held_out_validation(inputs: TunnelInputs, held_out: int) -> dict:
    """Fit on the narrower widths, predict the held-out one at every budget, compare with its grid (Step Law's
    relative loss gap) and the loss law's prediction with its best measured loss."""
    points = [optimum.point for optimum in optima(inputs.results)]
    laws = fit_laws([point for point in points if point.width != held_out], inputs.seed)
    by_budget = {}
    for point in (point for point in points if point.width == held_out):
        grid = [r for r in inputs.results if (r.width, r.tokens) == (held_out, point.tokens)]
        lr = laws.lr.predict(width=held_out, tokens=point.tokens)[0]
        batch = laws.batch_size.predict(tokens=point.tokens)[0]
        best = min(grid, key=lambda r: r.loss)
        predicted_loss = laws.loss.predict(held_out, point.tokens)
        by_budget[point.tokens] = {
            "predicted_lr": lr, "predicted_batch_size": batch, "best_lr": best.lr, "best_batch_size": best.batch_size,
            "best_loss": best.loss, "loss_gap": loss_gap(grid, lr, round(batch)),
            "predicted_loss": interval(*predicted_loss), "loss_error": predicted_loss[0] / best.loss - 1.0}
    largest = max(by_budget)
    return {"width": held_out, "tokens": largest, "loss_gap": by_budget[largest]["loss_gap"],
            "loss_error": by_budget[largest]["loss_error"], "by_budget": {str(k): v for k, v in by_budget.items()}}


def best_curves(inputs: TunnelInputs, width: int) -> list[Curve]:
    """The decay branches of the setting with the lowest loss at this width's largest budget, shortest first."""
    largest = max(r.tokens for r in inputs.results)
    best = min((r for r in inputs.results if (r.width, r.tokens) == (width, largest)), key=lambda r: r.loss)
    return sorted((c for c in inputs.curves if (c.width, c.lr, c.batch_size) == (width, best.lr, best.batch_size)),
                  key=lambda c: c.tokens)


def fit_curves(curves: Sequence[Curve]):
    """The loss-curve law on the longest branch (after its first CURVE_SKIP of steps) and the decays of the others
    (their trunk is a prefix of the longest one's)."""
    longest = max(curves, key=lambda c: len(c.losses))
    skips = [round(CURVE_SKIP * len(longest.losses)) if c is longest else c.decay_start_step for c in curves]
    return fit_loss_curve([(c.lrs, c.losses) for c in curves], skip=skips)


def curve_check(curves: Sequence[Curve]) -> dict:
    """Fit the curve law without the second-longest branch, then predict that branch: MAPE over its decay steps
    (the part no fitted curve saw) and over its whole curve after the skipped start, block means against block
    means."""
    unseen = curves[-2]
    law = fit_curves([c for c in curves if c is not unseen])
    predicted = law.predict(unseen.lrs)
    decay = slice(unseen.decay_start_step, None)
    whole = slice(round(CURVE_SKIP * len(curves[-1].losses)), None)

    def compare(part: slice) -> tuple[float, np.ndarray, np.ndarray]:
        size = max(1, len(unseen.losses[part]) // CURVE_BLOCKS)
        measured, fitted = block_means(unseen.losses[part], size), block_means(predicted[part], size)
        return mape(fitted, measured), measured, fitted

    decay_mape, measured, fitted = compare(decay)
    return {"curve_mape": decay_mape, "whole_curve_mape": compare(whole)[0], "unseen_tokens": unseen.tokens,
            "fitted_tokens": [c.tokens for c in curves if c is not unseen], "law": law.as_dict(),
            "measured": measured.tolist(), "predicted": fitted.tolist(), "first_step": unseen.decay_start_step}


def choose_decay(curves: Sequence[Curve], warmup_fraction: float, fractions: Sequence[float]) -> dict:
    """The curve law on every branch, asked for the final loss of the longest run under each decay length: the
    length with the lowest predicted loss is the one the target run uses (as a share of its tokens)."""
    law = fit_curves(curves)
    longest = max(curves, key=lambda c: len(c.losses))
    steps, peak = len(longest.losses), float(longest.lrs.max())  # the law's areas are in the proxies' lr units
    finals = {}
    for fraction in fractions:
        lrs = wsd_lrs(steps, round(warmup_fraction * steps), max(1, round(fraction * steps)), peak_lr=peak)
        finals[fraction] = float(law.predict(lrs)[-1])
    best = min(finals, key=finals.get)
    return {"fraction": best, "predicted_final_loss": {str(k): v for k, v in finals.items()}, "steps": steps,
            "law": law.as_dict()}


# ----------------------------------------------------------------------------- the whole report


def edge_warnings(results: Sequence[ProxyResult]) -> list[str]:
    found = optima(results)
    warnings = []
    for name, flags in (("learning rate", [o.lr_on_edge for o in found]),
                        ("batch size", [o.batch_on_edge for o in found])):
        if sum(flags):
            warnings.append(f"the best {name} lies on the grid's edge at {sum(flags)} of {len(found)} scales: "
                            f"extend the grid past it for a sharper fit")
    return warnings


def analyse(inputs: TunnelInputs) -> dict:
    """Validation first (largest width held out), then the laws on every width and the target's settings."""
    widths = sorted({r.width for r in inputs.results})
    validation = held_out_validation(inputs, widths[-1])
    curves = best_curves(inputs, widths[-1])
    validation |= curve_check(curves)
    found = optima(inputs.results)
    laws = fit_laws([optimum.point for optimum in found], inputs.seed)
    width, tokens = inputs.target_width, inputs.target_tokens
    lr, batch, loss = (laws.lr.predict(width=width, tokens=tokens), laws.batch_size.predict(tokens=tokens),
                       laws.loss.predict(width, tokens))
    decay = choose_decay(curves, inputs.warmup_fraction, inputs.decay_fractions)
    batch_sequences = max(1, round(batch[0]))
    prediction = {
        "width": width, "tokens": tokens, "peak_lr": interval(*lr), "batch_size": interval(*batch),
        "batch_sequences": batch_sequences, "batch_tokens": batch_sequences * inputs.seq_len,
        "batch_size_from_loss": interval(*laws.batch_vs_loss.predict(loss=loss[0])), "loss": interval(*loss),
        "warmup_tokens": round(inputs.warmup_fraction * tokens), "decay_fraction": decay["fraction"],
        "decay_tokens": round(decay["fraction"] * tokens), "steps": math.ceil(tokens / (batch_sequences *
                                                                                       inputs.seq_len))}
    return {
        "prediction": prediction, "validation": validation, "laws": laws_dict(laws), "decay": decay,
        "optima": [{"width": o.point.width, "tokens": o.point.tokens, "lr": o.point.lr,
                    "batch_size": o.point.batch_size, "loss": o.point.loss, "lr_on_edge": o.lr_on_edge,
                    "batch_on_edge": o.batch_on_edge} for o in found],
        "runs": [{"width": r.width, "tokens": r.tokens, "lr": r.lr, "batch_size": r.batch_size, "loss": r.loss}
                 for r in inputs.results],
        "warnings": edge_warnings(inputs.results),
    }


# ----------------------------------------------------------------------------- markdown


def _span(item: dict, fmt: str) -> str:
    return f"{item['value']:{fmt}} ({item['low']:{fmt}} - {item['high']:{fmt}})"


def report_markdown(report: dict) -> str:
    p, v, laws = report["prediction"], report["validation"], report["laws"]
    lines = [
        "# Wind tunnel", "",
        f"Target: width {p['width']}, {p['tokens']:,} tokens ({report['target_model']}).", "",
        "## Prediction (95% bootstrap intervals)", "",
        "| setting | value |", "| --- | --- |",
        f"| peak learning rate (μP, base width {report['grid']['base_width']}) | {_span(p['peak_lr'], '.3g')} |",
        f"| batch size (sequences) | {_span(p['batch_size'], '.3g')} -> {p['batch_sequences']} "
        f"({p['batch_tokens']:,} tokens) |",
        f"| batch size from the loss law | {_span(p['batch_size_from_loss'], '.3g')} |",
        f"| final loss | {_span(p['loss'], '.4f')} |",
        f"| warmup | {p['warmup_tokens']:,} tokens (the policy's warmup_fraction) |",
        f"| decay | {p['decay_fraction']:.0%} of the tokens = {p['decay_tokens']:,} (chosen by the loss-curve law) |",
        "",
        f"## Validation at the held-out width {v['width']}", "",
        f"- loss gap of the predicted setting over the best grid point at {v['tokens']:,} tokens: "
        f"**{v['loss_gap']:.2%}**",
        f"- loss-law error there: {v['loss_error']:+.2%}",
        f"- loss-curve MAPE on the unseen {v['unseen_tokens']:,}-token decay: **{v['curve_mape']:.2%}** "
        f"(whole curve {v['whole_curve_mape']:.2%}; fitted on the {', '.join(f'{t:,}' for t in v['fitted_tokens'])}"
        "-token branches)", "",
        "| tokens | predicted lr | best lr | predicted batch | best batch | loss gap | loss-law error |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for tokens, row in v["by_budget"].items():
        lines.append(f"| {int(tokens):,} | {row['predicted_lr']:.3g} | {row['best_lr']:.3g} | "
                     f"{row['predicted_batch_size']:.3g} | {row['best_batch_size']:g} | {row['loss_gap']:.2%} | "
                     f"{row['loss_error']:+.2%} |")
    lr_law, batch_law, loss_law = laws["lr"], laws["batch_size"], laws["loss"]
    lines += [
        "", "## Laws (fitted on every width)", "",
        f"- optimal lr ∝ width^{lr_law['exponents']['width']:+.3f} "
        f"[{lr_law['intervals']['width'][0]:+.3f}, {lr_law['intervals']['width'][1]:+.3f}] x tokens^"
        f"{lr_law['exponents']['tokens']:+.3f} [{lr_law['intervals']['tokens'][0]:+.3f}, "
        f"{lr_law['intervals']['tokens'][1]:+.3f}] (flat in width under μP: the interval should hold 0)",
        f"- optimal batch ∝ tokens^{batch_law['exponents']['tokens']:+.3f} "
        f"[{batch_law['intervals']['tokens'][0]:+.3f}, {batch_law['intervals']['tokens'][1]:+.3f}]; "
        f"∝ loss^{laws['batch_size_vs_loss']['exponents']['loss']:+.2f}",
        f"- loss = {loss_law['e']:.3f} + {loss_law['a']:.3f} (width/{loss_law['width0']:g})^-{loss_law['alpha']:.3f}"
        f" + {loss_law['b']:.3f} (tokens/{loss_law['tokens0']:g})^-{loss_law['beta']:.3f}",
        "", "## Best setting per scale", "", "| width | tokens | lr | batch | loss |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in report["optima"]:
        edge = " (edge)" if row["lr_on_edge"] else ""
        lines.append(f"| {row['width']} | {row['tokens']:,} | {row['lr']:.3g}{edge} | {row['batch_size']:.3g}"
                     f"{' (edge)' if row['batch_on_edge'] else ''} | {row['loss']:.4f} |")
    if report["warnings"]:
        lines += ["", "## Warnings", "", *(f"- {warning}" for warning in report["warnings"])]
    lines += ["", "## Next", "", f"- `factory plan --build BUILD --policy {report['files']['policy']}`",
              f"- `factory train BUILD/manifests/stable.json --config {report['files']['trainer']}`", ""]
    return "\n".join(lines)
