"""The model sandbox's report: what it measured, fitted and proposed, as JSON-ready data and as Markdown."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datafactory.mixtures.policy import Policy
from datafactory.mixtures.sandbox import (
    UNITS,
    MixtureSpace,
    Proposal,
    TargetFit,
    held_out_objective,
    objective_weights,
    scaling_check,
)


@dataclass(frozen=True)
class SandboxOutcome:
    """What one sandbox measured and proposed, for its report."""

    build: Path
    policy: Policy
    space: MixtureSpace
    heldout: dict[str, list[dict]]
    units: np.ndarray  # the candidates' whole shares, one row per proxy run
    results: list[dict]  # each candidate run's losses, in the order of units
    fits: dict[str, TargetFit]
    losses: dict[str, np.ndarray]
    proposal: Proposal
    confirm: dict[str, dict]  # the confirmation and scaling runs, by name
    policy_file: Path
    params: list[int]  # non-embedding parameters of each proxy size


def make_report(outcome: SandboxOutcome) -> dict:
    """Everything a reader needs to trust or doubt the proposal, as JSON-ready data."""
    o = outcome
    rules, names = o.policy.sandbox, o.space.names
    objective = objective_weights(rules)

    def measured(result: dict) -> dict[str, float]:
        value = float(sum(share * result["losses"][name] for name, share in objective.items()))
        return result["losses"] | {"objective": value}

    sizes = range(1, len(rules.models))
    confirm, results = o.confirm, o.results
    whole = held_out_objective(o.fits, objective, o.losses)
    report = {
        "build": str(o.build.resolve()),
        "policy": o.policy.name,
        "components": names,
        "prior": dict(zip(names, o.space.prior.round(6).tolist(), strict=True)),
        "caps": dict(zip(names, o.space.caps.tolist(), strict=True)),
        "targets": {name: {**rules.targets[name].model_dump(exclude_none=True),
                           "heldout_shards": [entry["path"] for entry in entries]}
                    for name, entries in o.heldout.items()},
        "objective": objective,
        "runs": [{"name": result["name"], "weights": weights_of(names, row), "losses": result["losses"],
                  "objective": measured(result)["objective"], "train_loss": result["train_loss"],
                  "seconds": round(result["seconds"], 3)}
                 for result, row in zip(results, o.units, strict=True)],
        "fit": {name: {"linear": fit.scores["linear"], "gbm": fit.scores["gbm"], "winner": fit.winner}
                for name, fit in o.fits.items()} | {"objective": whole},
        "proposal": {
            "weights": weights_of(names, o.proposal.units),
            "predicted": o.proposal.predicted,
            "measured": measured(confirm["proposal"]),
            "prior_predicted": o.proposal.prior_predicted,
            "prior_measured": measured(results[0]),
            "policy_file": str(o.policy_file.resolve()),
        },
        "scaling": scaling_check(
            o.params,
            [measured(results[0])["objective"]] + [measured(confirm[f"prior-m{i}"])["objective"] for i in sizes],
            [measured(confirm["proposal"])["objective"]] + [measured(confirm[f"proposal-m{i}"])["objective"]
                                                           for i in sizes]),
    }
    return report | {"warnings": warnings(report)}


def warnings(report: dict) -> list[str]:
    """What should stop a reader from taking the proposal as it is."""
    out = []
    rho = report["fit"]["objective"]["spearman"]
    if rho is None or rho < 0.5:
        out.append(f"the fit ranks held-out runs poorly on the objective (Spearman {number(rho)}): add runs "
                   "(--runs) or proxy_tokens before trusting the proposal")
    proposal = report["proposal"]
    if proposal["measured"]["objective"] >= proposal["prior_measured"]["objective"]:
        out.append("the confirmation run is no better than the prior: keep the prior mixture")
    return out


def weights_of(names: list[str], units: np.ndarray) -> dict[str, float]:
    return {name: int(unit) / UNITS for name, unit in zip(names, units, strict=True)}


def number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report_markdown(report: dict) -> str:
    """Fit quality per target, the proposal against the prior (predicted and measured), and the scaling check."""
    names = report["components"]
    lines = [f"# Model sandbox: `{report['build']}`", "",
             f"{len(report['runs'])} proxy runs; objective: "
             + " + ".join(f"{share:.2f} x {name}" for name, share in report["objective"].items()), "",
             *([f"Target sets: {report['targets_chosen']} (the policy names none in sandbox.targets).", ""]
               if report.get("targets_chosen", "policy") != "policy" else []),
             "## Fit on held-out runs (5-fold cross-validation)", "",
             "| target | linear R^2 | linear Spearman | GBM R^2 | GBM Spearman | better |", "|---|---|---|---|---|---|"]
    for name, fit in report["fit"].items():
        if name == "objective":
            continue
        lin, gbm = fit["linear"], fit["gbm"]
        lines.append(f"| {name} | {number(lin['r2'])} | {number(lin['spearman'])} | {number(gbm['r2'])} | "
                     f"{number(gbm['spearman'])} | {fit['winner']} |")
    whole = report["fit"]["objective"]
    lines += ["", f"Objective, winners' out-of-fold predictions: R^2 {number(whole['r2'])}, "
              f"Spearman {number(whole['spearman'])}.", "",
              "## Proposal", "", "| mixture | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    proposal = report["proposal"]
    for label, weights in (("prior", report["runs"][0]["weights"]), ("proposal", proposal["weights"])):
        lines.append(f"| {label} | " + " | ".join(f"{weights[name]:.3f}" for name in names) + " |")
    lines += ["", "| loss | prior predicted | prior measured | proposal predicted | proposal measured |",
              "|---|---|---|---|---|"]
    for name in [*report["objective"], "objective"]:
        values = (proposal["prior_predicted"], proposal["prior_measured"], proposal["predicted"], proposal["measured"])
        lines.append(f"| {name} | " + " | ".join(number(value[name], 4) for value in values) + " |")
    scaling = report["scaling"]
    lines += ["", f"Policy for `factory plan`: `{proposal['policy_file']}`", "", "## Scaling check", "",
              "| non-embedding params | prior | proposal | advantage |", "|---|---|---|---|"]
    for params, prior, prop, gap in zip(scaling["params"], scaling["prior"], scaling["proposal"],
                                        scaling["advantage"], strict=True):
        lines.append(f"| {params:,} | {prior:.4f} | {prop:.4f} | {gap:+.4f} |")
    lines += ["", scaling["verdict"], ""]
    if report["warnings"]:
        lines += ["## Warnings", "", *(f"- {warning}" for warning in report["warnings"]), ""]
    return "\n".join(lines)
