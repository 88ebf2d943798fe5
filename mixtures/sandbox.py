"""The model sandbox's pure part (RegMix, Liu et al. 2024): held-out target sets, candidate mixtures around the
planner's prior under the repetition caps, proxy manifests, regressions from mixture to loss, proposal, scaling fit."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy.stats import spearmanr
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold, cross_val_predict

from datafactory.factory.errors import UserError
from datafactory.mixtures.methods import InfeasiblePlan, exact, largest_remainder
from datafactory.mixtures.planner import group_key, make_groups, phase_manifest, plan_anneal, plan_stable, supplies
from datafactory.mixtures.policy import Policy, SandboxRules, TargetSet, WindTunnelRules

UNITS = 10_000  # mixtures are whole multiples of 1/UNITS, so a proposal's shares are exact decimals in its policy
EXPLORE = 0.25  # share of the Dirichlet's mean spread uniformly, so components the prior starves still get tried
MODELS = ("linear", "gbm")


class SandboxError(UserError, ValueError):
    """A sandbox the build or policy cannot support; the message says what to change."""


# ----------------------------------------------------------------------------- target sets


def matches(entry: dict, target: TargetSet) -> bool:
    return (target.source is None or entry["source"] == target.source) and (
        target.lang is None or entry["lang"] == target.lang)


def default_targets(index: list[dict], by_language: bool) -> dict[str, TargetSet]:
    """One validation set per source of the build (per source x language with `by_language`): what a policy that
    names no targets is validated on."""
    keys = sorted({(entry["source"], entry["lang"] if by_language else None) for entry in index})
    return {f"{source}_{lang}" if lang else source: TargetSet(source=source, lang=lang) for source, lang in keys}


def select_heldout(index: list[dict], rules: SandboxRules | WindTunnelRules) -> dict[str, list[dict]]:
    """Held-out shards per target set: ceil(heldout_fraction) of its shards (at least one), picked by a hash of
    the path, so the choice is stable across reruns and does not follow the order shards were written in."""
    if not rules.targets:
        raise SandboxError("the policy declares no sandbox.targets: add validation sets, e.g. "
                           "sandbox: {targets: {news_en: {source: news, lang: en}}}")
    heldout = {}
    for name, target in sorted(rules.targets.items()):
        shards = sorted((entry for entry in index if matches(entry, target)),
                        key=lambda entry: hashlib.sha256(entry["path"].encode()).hexdigest())
        if not shards:
            have = sorted({(entry["source"], entry["lang"]) for entry in index})
            raise SandboxError(f"validation target {name} ({target.model_dump(exclude_none=True)}) matches no shard; "
                               f"the build has (source, lang) {have}")
        heldout[name] = sorted(shards[:max(1, math.ceil(rules.heldout_fraction * len(shards)))],
                               key=lambda entry: entry["path"])
    return heldout


def training_index(index: list[dict], heldout: dict[str, list[dict]]) -> list[dict]:
    held = {entry["path"] for entries in heldout.values() for entry in entries}
    return [entry for entry in index if entry["path"] not in held]


# ----------------------------------------------------------------------------- the space of mixtures


@dataclass(frozen=True)
class MixtureSpace:
    """Stable-phase components the proxies can train on, the planner's weights for them, and the most each may
    take of the real run's stable budget under max_epochs (after the anneal's repeats), as shares."""

    names: list[str]
    prior: np.ndarray
    caps: np.ndarray
    stable_budget: int


def mixture_space(index: list[dict], train_index: list[dict], policy: Policy) -> MixtureSpace:
    """The prior and caps of the run the policy plans on the whole build, as `factory plan` computes them."""
    total = policy.total_tokens or sum(entry["tokens"] for entry in index)
    anneal_budget = round(exact(policy.anneal_fraction) * total)
    stable_budget = total - anneal_budget
    anneal_groups, anneal_planned = plan_anneal(index, anneal_budget, policy)
    repeats = {shard["path"]: Fraction(anneal_planned[group.name], group.tokens)
               for group in anneal_groups for shard in group.shards}
    groups, planned = plan_stable(index, stable_budget, policy, repeats)
    caps = {supply.name: supply.cap for supply in supplies(groups, policy.max_epochs, repeats)}
    names = sorted({group_key(entry, policy.group_by) for entry in train_index})
    if len(names) < 2:
        raise SandboxError(f"the sandbox mixes stable components, but the shards left for training form only "
                           f"{names} (group_by: {policy.group_by}): hold out less, or group by lang or source_lang")
    prior = np.array([planned[name] for name in names], dtype=np.float64)
    prior = prior / prior.sum() if prior.sum() > 0 else np.full(len(names), 1 / len(names))
    share_caps = np.array([min(UNITS, caps[name] * UNITS // stable_budget) / UNITS for name in names])
    if share_caps.sum() < 1:
        raise SandboxError(f"the components {names} can hold only {share_caps.sum():.3f} of the stable phase within "
                           f"max_epochs {policy.max_epochs:g}: raise max_epochs or lower total_tokens")
    return MixtureSpace(names, prior, share_caps, stable_budget)


def cap_weights(weights: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """The mixture with each weight at most its cap: a capped weight's excess goes to the others in proportion to
    their weights (evenly when they have none), like the planner's water-filling. Assumes caps sum to >= 1."""
    out = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    fixed = np.zeros(len(out), dtype=bool)
    while (over := (out > caps + 1e-12) & ~fixed).any():
        fixed |= over
        out[over] = caps[over]
        free = ~fixed
        base = out[free] if out[free].sum() > 0 else np.ones(int(free.sum()))
        out[free] = (1 - out[fixed].sum()) * base / base.sum()
    return out


def to_units(weights: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Whole 1/UNITS shares summing to UNITS, none past its cap: floors, then the rest by largest remainder."""
    scaled = cap_weights(weights, caps) * UNITS
    units = np.minimum(np.floor(scaled + 1e-9), np.round(caps * UNITS)).astype(np.int64)
    room = np.round(caps * UNITS).astype(np.int64) - units
    for i in sorted(range(len(units)), key=lambda i: (-(scaled[i] - units[i]), i)):
        if units.sum() == UNITS:
            break
        units[i] += min(room[i], UNITS - units.sum())
    return units


def dirichlet_alpha(space: MixtureSpace, concentration: float) -> np.ndarray:
    n = len(space.names)
    return concentration * n * ((1 - EXPLORE) * space.prior + EXPLORE / n)


def sample_mixtures(space: MixtureSpace, count: int, concentration: float, rng: np.random.Generator) -> np.ndarray:
    """count mixtures from a Dirichlet whose mean is the prior (a quarter of it spread evenly), capped."""
    draws = rng.dirichlet(dirichlet_alpha(space, concentration), size=count)
    return np.array([cap_weights(draw, space.caps) for draw in draws])


def candidates(space: MixtureSpace, runs: int, concentration: float, seed: int) -> np.ndarray:
    """runs mixtures in units: the prior first (the baseline every result is compared with), then samples."""
    rng = np.random.default_rng([seed, 0x5A4D])
    draws = sample_mixtures(space, runs - 1, concentration, rng)
    return np.array([to_units(space.prior, space.caps)] + [to_units(draw, space.caps) for draw in draws])


# ----------------------------------------------------------------------------- manifests


def schedule(tokens: int, policy: Policy) -> dict:
    """The policy's warmup and decay fractions over a proxy's tokens."""
    decay = round(exact(policy.anneal_fraction) * tokens)
    return {"total_tokens": tokens, "warmup_tokens": round(exact(policy.warmup_fraction) * tokens),
            "decay_start_tokens": tokens - decay, "decay_tokens": decay, "decay_shape": policy.decay_shape}


def proxy_manifests(train_index: list[dict], names: list[str], units: np.ndarray, policy: Policy, tokens: int,
                    tokenizer: dict, root: str, anneal_file: str) -> tuple[dict, dict | None]:
    """A WSD pair over `tokens` tokens, both phases drawing each component's units/UNITS share: the candidate is
    the whole run's mixture, so the decay does not switch recipes (None for the anneal when it gets no tokens)."""
    groups = [group for group in make_groups(train_index, lambda entry: group_key(entry, policy.group_by), "stable")
              if group.name in names]
    share = {name: Fraction(int(unit), UNITS) for name, unit in zip(names, units, strict=True)}
    for group in groups:
        if (passes := share[group.name] * tokens / group.tokens) > exact(policy.max_epochs):
            raise InfeasiblePlan(
                f"a proxy run of {tokens:,} tokens would read {group.name} {float(passes):.1f} times, past "
                f"max_epochs {policy.max_epochs:g}: lower sandbox.proxy_tokens, or hold out less of it")
    lr = schedule(tokens, policy)
    context = {"tokenizer": tokenizer, "seq_len": train_index[0]["seq_len"], "lr_schedule": lr}
    named = {"root": root, "policy": f"{policy.name}-sandbox"}

    def phase(name: str, budget: int) -> dict:
        planned = largest_remainder({group: weight * budget for group, weight in share.items()})
        return phase_manifest(name, groups, planned, policy, context) | named

    stable = phase("stable", lr["decay_start_tokens"])
    if not lr["decay_tokens"]:
        return stable, None
    return stable | {"next_phase": anneal_file}, phase("anneal", lr["decay_tokens"])


def validation_manifest(heldout: dict[str, list[dict]], policy: Policy, tokenizer: dict, root: str) -> dict:
    """One source per target set, its held-out shards read once: what the evaluator walks."""
    budget = sum(entry["tokens"] for entries in heldout.values() for entry in entries)
    sources = [
        {"name": name, "weight": sum(e["tokens"] for e in entries) / budget,
         "available_tokens": sum(e["tokens"] for e in entries), "planned_tokens": sum(e["tokens"] for e in entries),
         "epochs": 1.0, "shards": [{key: e[key] for key in ("path", "sha256", "rows", "tokens")} for e in entries]}
        for name, entries in sorted(heldout.items())
    ]
    return {"format_version": 1, "phase": "stable", "root": root, "policy": f"{policy.name}-sandbox-validation",
            "tokenizer": tokenizer, "seq_len": next(iter(heldout.values()))[0]["seq_len"], "seed": policy.seed,
            "token_budget": budget, "lr_schedule": schedule(budget, policy), "sources": sources}


# ----------------------------------------------------------------------------- regression


def objective_weights(rules: SandboxRules) -> dict[str, float]:
    """Normalised weights of the target losses in the objective (equal when the policy names none)."""
    raw = rules.objective or dict.fromkeys(rules.targets, 1.0)
    total = sum(raw.values())
    return {name: raw[name] / total for name in sorted(raw)}


def regressor(kind: str, seed: int) -> LinearRegression | GradientBoostingRegressor:
    """RegMix's two families: a linear model on the weights and a small gradient-boosted tree ensemble."""
    if kind == "linear":
        return LinearRegression()
    # Shallow trees and a low learning rate: a few dozen runs is all the data there is.
    return GradientBoostingRegressor(n_estimators=200, max_depth=2, learning_rate=0.05, subsample=1.0,
                                     min_samples_leaf=2, random_state=seed)


def score(measured: np.ndarray, predicted: np.ndarray) -> dict[str, float | None]:
    """R^2 and Spearman's rho of out-of-fold predictions; None where they are undefined (constant values)."""
    rho = spearmanr(measured, predicted).statistic if np.ptp(measured) > 0 and np.ptp(predicted) > 0 else math.nan
    r2 = r2_score(measured, predicted) if np.ptp(measured) > 0 else math.nan
    return {"r2": None if math.isnan(r2) else float(r2), "spearman": None if math.isnan(rho) else float(rho)}


@dataclass
class TargetFit:
    """Cross-validated quality of both regressors on one target, and the winner refitted on every run."""

    scores: dict[str, dict[str, float | None]]
    held_out: dict[str, list[float]]  # out-of-fold predictions per regressor, in run order
    winner: str
    model: LinearRegression | GradientBoostingRegressor


def fit_target(weights: np.ndarray, losses: np.ndarray, seed: int, folds: int = 5) -> TargetFit:
    """K-fold cross-validation (each run predicted by models that never saw it); the better R^2 wins, the linear
    model on ties or when neither R^2 is defined."""
    splitter = KFold(n_splits=min(folds, len(losses)), shuffle=True, random_state=seed)
    held_out = {kind: cross_val_predict(regressor(kind, seed), weights, losses, cv=splitter) for kind in MODELS}
    scores = {kind: score(losses, held_out[kind]) for kind in MODELS}
    r2 = {kind: -math.inf if scores[kind]["r2"] is None else scores[kind]["r2"] for kind in MODELS}
    winner = "gbm" if r2["gbm"] > r2["linear"] else "linear"
    return TargetFit(scores, {kind: pred.tolist() for kind, pred in held_out.items()}, winner,
                     regressor(winner, seed).fit(weights, losses))


def fit_targets(weights: np.ndarray, losses: dict[str, np.ndarray], seed: int) -> dict[str, TargetFit]:
    if len(weights) < 4:
        raise SandboxError(f"{len(weights)} proxy runs are too few to cross-validate a regression: use 4 or more")
    return {name: fit_target(weights, values, seed) for name, values in sorted(losses.items())}


def predict_objective(fits: dict[str, TargetFit], objective: dict[str, float], weights: np.ndarray) -> np.ndarray:
    return sum(share * fits[name].model.predict(weights) for name, share in objective.items())


def held_out_objective(fits: dict[str, TargetFit], objective: dict[str, float], losses: dict[str, np.ndarray]
                       ) -> dict[str, float | None]:
    """How well the winners' out-of-fold predictions rank and explain the objective itself."""
    measured = sum(share * losses[name] for name, share in objective.items())
    predicted = sum(share * np.array(fits[name].held_out[fits[name].winner]) for name, share in objective.items())
    return score(measured, predicted)


# ----------------------------------------------------------------------------- the proposal


@dataclass(frozen=True)
class Proposal:
    units: np.ndarray
    predicted: dict[str, float]  # per target, and "objective"
    prior_predicted: dict[str, float]


def propose(space: MixtureSpace, fits: dict[str, TargetFit], objective: dict[str, float], rules: SandboxRules,
            seed: int) -> Proposal:
    """RegMix's search: score `samples` mixtures drawn like the proxies' (so the model is not asked to extrapolate),
    and propose the mean of the top_k. A mean of capped mixtures is within the caps too."""
    rng = np.random.default_rng([seed, 0x9A0F])
    pool = np.vstack([sample_mixtures(space, rules.samples - 1, rules.concentration, rng), space.prior[None]])
    scores = predict_objective(fits, objective, pool)
    best = pool[np.argsort(scores, kind="stable")[:rules.top_k]].mean(axis=0)
    units = to_units(best, space.caps)

    def predicted(units_row: np.ndarray) -> dict[str, float]:
        row = (units_row / UNITS)[None]
        out = {name: float(fit.model.predict(row)[0]) for name, fit in fits.items()}
        return out | {"objective": float(sum(share * out[name] for name, share in objective.items()))}

    return Proposal(units, predicted(units), predicted(to_units(space.prior, space.caps)))


def proposal_policy(policy: Policy, names: list[str], units: np.ndarray) -> dict:
    """The policy with the proposal as fixed stable targets (exact 4-decimal shares summing to 1), as a mapping
    ready for YAML; the planner accepts it (the caps were applied at the same budget it plans)."""
    data = policy.model_dump(mode="json", exclude_unset=True)
    data["name"] = f"{policy.name}-sandbox"
    data.setdefault("stable", {})["targets"] = {
        name: int(unit) / UNITS for name, unit in zip(names, units, strict=True) if unit > 0}
    Policy.model_validate(data)  # fail here, not in the user's `factory plan`
    return data


# ----------------------------------------------------------------------------- scaling


def power_law(params: list[float], losses: list[float]) -> dict[str, float] | None:
    """L(N) = A * N^-alpha fitted in log-log space (two or three sizes leave no room for an offset term)."""
    if len(params) < 2:
        return None
    slope, intercept = np.polyfit(np.log(params), np.log(losses), 1)
    return {"A": float(math.exp(intercept)), "alpha": float(-slope)}


def scaling_check(params: list[int], prior: list[float], proposal: list[float]) -> dict:
    """Loss vs proxy size for both mixtures, fitted, and the proposal's advantage (prior - proposal) per size and
    extrapolated to 10x the largest proxy: does it hold as models grow?"""
    fits = {"prior": power_law(params, prior), "proposal": power_law(params, proposal)}
    gaps = [p - q for p, q in zip(prior, proposal, strict=True)]
    out = {"params": params, "prior": prior, "proposal": proposal, "advantage": gaps, "fits": fits}
    if fits["prior"] is None:
        return out | {"verdict": "one proxy size only: add models to sandbox.models for a scaling check"}
    target = 10 * max(params)
    at = {name: fit["A"] * target ** -fit["alpha"] for name, fit in fits.items()}
    gap = at["prior"] - at["proposal"]
    trend = "grows" if gaps[-1] > gaps[0] else "shrinks"
    verdict = (f"advantage {trend} with size ({gaps[0]:+.4f} -> {gaps[-1]:+.4f} nats); "
               f"{gap:+.4f} extrapolated to {target:,} parameters")
    if all(g <= 0 for g in gaps):
        verdict = f"the proposal is no better than the prior at any size ({gaps[0]:+.4f} -> {gaps[-1]:+.4f} nats)"
    return out | {"extrapolated": {"params": target, "advantage": gap}, "verdict": verdict}
