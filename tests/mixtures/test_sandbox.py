"""The sandbox's pure part: held-out target sets, prior and caps as the planner sees them, capped Dirichlet samples,
proxy manifests, regression checked on held-out runs, the proposal, the written policy and the scaling fit."""

import json

import numpy as np
import pytest
import yaml
from support.handmade import make_build
from typer.testing import CliRunner

from datafactory.app.cli import app
from datafactory.factory.config import ConfigError
from datafactory.factory.manifest import validate_manifest
from datafactory.factory.shards import read_index
from datafactory.mixtures.methods import InfeasiblePlan
from datafactory.mixtures.planner import plan
from datafactory.mixtures.policy import PhaseRules, Policy, SandboxRules, TargetSet, load_policy
from datafactory.mixtures.sandbox import (
    UNITS,
    MixtureSpace,
    SandboxError,
    candidates,
    cap_weights,
    default_targets,
    fit_targets,
    held_out_objective,
    mixture_space,
    objective_weights,
    proposal_policy,
    propose,
    proxy_manifests,
    scaling_check,
    select_heldout,
    to_units,
    training_index,
    validation_manifest,
)

TOKENIZER = {"path": "tokenizer/tokenizer.model", "sha256": "0" * 64, "vocab_size": 100, "bos_id": 1, "eos_id": 2,
             "pad_id": 3}


@pytest.fixture
def build(tmp_path):
    return make_build(tmp_path / "build")


def sandbox_policy(**rules) -> Policy:
    targets = {"news_en": TargetSet(source="news", lang="en"), "sw": TargetSet(lang="sw")}
    return Policy(total_tokens=8_000, sandbox=SandboxRules(targets=targets, **rules))


# ----------------------------------------------------------------------------- target sets and the space


def test_heldout_shards_are_a_stable_share_of_each_target_set(build):
    index = read_index(build)
    heldout = select_heldout(index, sandbox_policy(heldout_fraction=0.5).sandbox)
    assert {name: len(entries) for name, entries in heldout.items()} == {"news_en": 1, "sw": 1}
    assert all(entry["source"] == "news" and entry["lang"] == "en" for entry in heldout["news_en"])
    assert select_heldout(list(reversed(index)), sandbox_policy(heldout_fraction=0.5).sandbox) == heldout
    everything = select_heldout(index, sandbox_policy(heldout_fraction=1.0).sandbox)
    assert len(everything["sw"]) == 2
    train = training_index(index, everything)
    assert not {entry["path"] for entry in train} & {entry["path"] for entry in everything["sw"]}


def test_without_declared_targets_every_source_and_language_is_one(build):
    index = read_index(build)
    pairs = sorted({(entry["source"], entry["lang"]) for entry in index})
    targets = default_targets(index, by_language=True)
    assert sorted((target.source, target.lang) for target in targets.values()) == pairs
    assert set(targets) == {f"{source}_{lang}" for source, lang in pairs}
    assert {target.lang for target in default_targets(index, by_language=False).values()} == {None}
    heldout = select_heldout(index, SandboxRules(targets=targets))
    assert set(heldout) == set(targets) and all(heldout.values())


def test_target_sets_must_exist_and_be_declared(build):
    index = read_index(build)
    with pytest.raises(SandboxError, match="declares no sandbox.targets"):
        select_heldout(index, SandboxRules())
    with pytest.raises(SandboxError, match=r"target code .* matches no shard.*\('news', 'en'\)"):
        select_heldout(index, SandboxRules(targets={"code": TargetSet(source="code")}))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sandbox: {targets: {x: {}}}", "a target set needs a source, a lang, or both"),
        ("sandbox: {targets: {x: {lang: en}}, objective: {y: 1}}", r"objective names \['y'\]"),
        ("sandbox: {targets: {x: {lang: en}}, objective: {x: 0}}", "objective weights must be positive"),
        ("sandbox: {samples: 100, top_k: 200}", "top_k 200 is more than samples 100"),
        ("sandbox: {runs: 2}", "sandbox.runs: Input should be greater than or equal to 4"),
        ("sandbox: {targets: {objective: {lang: en}}}", "call the target set otherwise"),
    ],
)
def test_bad_sandbox_sections_say_what_to_change(tmp_path, text, message):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_policy(path)


def test_prior_and_caps_are_the_planners(build):
    policy = sandbox_policy(heldout_fraction=0.5)
    index = read_index(build)
    space = mixture_space(index, training_index(index, select_heldout(index, policy.sandbox)), policy)
    assert space.names == ["news", "sft", "web"]
    stable = json.loads(plan(build, policy)["stable"].read_text())
    weights = {source["name"]: source["weight"] for source in stable["sources"]}
    assert space.prior == pytest.approx([weights[name] for name in space.names])
    assert space.stable_budget == stable["token_budget"] == 7_200
    # sft: 200 tokens, no anneal repeats -> 800 tokens of 7,200 at most; the others are not bound.
    assert space.caps.tolist() == [1.0, 0.1111, 1.0]


def test_one_component_left_is_not_a_mixture(build):
    policy = Policy(sandbox=SandboxRules(targets={"all": TargetSet(lang="en")}, heldout_fraction=1.0))
    index = read_index(build)
    with pytest.raises(SandboxError, match=r"form only \['web'\]"):
        mixture_space(index, training_index(index, select_heldout(index, policy.sandbox)), policy)


# ----------------------------------------------------------------------------- sampling under the caps


def test_capping_keeps_a_mixture_within_its_caps():
    caps = np.array([0.1, 0.8, 1.0])
    capped = cap_weights(np.array([0.6, 0.3, 0.1]), caps)
    assert capped.sum() == pytest.approx(1) and (capped <= caps + 1e-12).all()
    assert capped[0] == pytest.approx(0.1)  # its excess went to the others in proportion: 0.3:0.1
    assert capped[1] / capped[2] == pytest.approx(3)
    units = to_units(np.array([1 / 3] * 3), np.array([0.3333, 1, 1]))
    assert units.sum() == UNITS and units[0] <= 3333


def test_candidates_start_at_the_prior_and_respect_the_caps():
    space = MixtureSpace(["a", "b", "c"], np.array([0.7, 0.2, 0.1]), np.array([1.0, 0.3, 0.15]), 1_000)
    units = candidates(space, 50, concentration=1.0, seed=3)
    assert units.shape == (50, 3) and (units.sum(axis=1) == UNITS).all()
    assert units[0].tolist() == [7000, 2000, 1000]
    assert (units <= np.round(space.caps * UNITS)).all()
    assert np.ptp(units[1:], axis=0).min() > 500  # spread out, not 50 copies of the prior
    assert (candidates(space, 50, 1.0, seed=3) == units).all()


# ----------------------------------------------------------------------------- manifests


def test_proxy_manifests_are_a_valid_wsd_pair_of_the_candidate(build):
    policy = sandbox_policy(heldout_fraction=0.5)
    index = read_index(build)
    train = training_index(index, select_heldout(index, policy.sandbox))
    stable, anneal = proxy_manifests(train, ["news", "sft", "web"], np.array([2500, 500, 7000]), policy, 4_000,
                                     TOKENIZER, "..", "c001-anneal.json")
    for manifest in (stable, anneal):
        validate_manifest(manifest)
    assert stable["next_phase"] == "c001-anneal.json" and anneal["phase"] == "anneal"
    assert (stable["token_budget"], anneal["token_budget"]) == (3_600, 400)
    assert {s["name"]: s["weight"] for s in stable["sources"]} == {"news": 0.25, "sft": 0.05, "web": 0.7}
    heldout = {entry["path"] for entries in select_heldout(index, policy.sandbox).values() for entry in entries}
    assert not heldout & {shard["path"] for s in stable["sources"] for shard in s["shards"]}
    with pytest.raises(InfeasiblePlan, match="would read sft 5.0 times, past max_epochs 4"):
        proxy_manifests(train, ["news", "sft", "web"], np.array([0, 5000, 5000]), policy, 2_000, TOKENIZER, "..", "x")


def test_validation_manifest_reads_each_target_set_once(build):
    policy = sandbox_policy(heldout_fraction=0.5)
    heldout = select_heldout(read_index(build), policy.sandbox)
    manifest = validation_manifest(heldout, policy, TOKENIZER, "..")
    validate_manifest(manifest)
    assert [source["name"] for source in manifest["sources"]] == ["news_en", "sw"]
    assert all(source["planned_tokens"] == source["available_tokens"] for source in manifest["sources"])


# ----------------------------------------------------------------------------- regression and proposal


def linear_world(runs: int, seed: int = 0) -> tuple[MixtureSpace, np.ndarray, dict[str, np.ndarray]]:
    """Three components; `b` lowers target t1 a lot, `c` lowers t2 a little; measurement noise on top."""
    space = MixtureSpace(["a", "b", "c"], np.array([0.6, 0.2, 0.2]), np.array([1.0, 0.7, 1.0]), 10_000)
    units = candidates(space, runs, 1.0, seed)
    weights = units / UNITS
    rng = np.random.default_rng(seed)
    losses = {"t1": 3.0 - 1.5 * weights[:, 1] + rng.normal(0, 0.02, runs),
              "t2": 2.0 - 0.3 * weights[:, 2] + rng.normal(0, 0.02, runs)}
    return space, weights, losses


def test_a_linear_response_is_fitted_and_checked_on_held_out_runs():
    _, weights, losses = linear_world(12)
    fits = fit_targets(weights, losses, seed=0)
    assert fits["t1"].winner == "linear"
    assert fits["t1"].scores["linear"]["r2"] > 0.9 and fits["t1"].scores["linear"]["spearman"] > 0.9
    assert len(fits["t1"].held_out["linear"]) == 12
    whole = held_out_objective(fits, {"t1": 0.5, "t2": 0.5}, losses)
    assert whole["r2"] > 0.8 and whole["spearman"] > 0.8


def test_boosted_trees_win_where_the_response_is_not_linear():
    space = MixtureSpace(["a", "b"], np.array([0.5, 0.5]), np.array([1.0, 1.0]), 10_000)
    weights = candidates(space, 40, 1.0, seed=1) / UNITS
    bowl = {"t": 2.0 + 8 * (weights[:, 0] - 0.5) ** 2}  # best in the middle: no line through it fits
    fit = fit_targets(weights, bowl, seed=0)["t"]
    assert fit.winner == "gbm"
    assert fit.scores["gbm"]["r2"] > 0.8 > fit.scores["linear"]["r2"]


def test_the_proposal_moves_toward_what_helps_the_objective_within_the_caps():
    space, weights, losses = linear_world(12)
    fits = fit_targets(weights, losses, seed=0)
    rules = SandboxRules(targets={"t1": TargetSet(lang="x"), "t2": TargetSet(lang="y")}, samples=2_000, top_k=50)
    objective = objective_weights(rules)
    assert objective == {"t1": 0.5, "t2": 0.5}
    proposal = propose(space, fits, objective, rules, seed=0)
    assert proposal.units.sum() == UNITS and proposal.units[1] <= 7_000
    assert proposal.units[1] / UNITS > space.prior[1] + 0.3  # b helps t1 five times as much as c helps t2
    assert proposal.predicted["objective"] < proposal.prior_predicted["objective"] - 0.1


def test_too_few_runs_cannot_be_cross_validated():
    _, weights, losses = linear_world(4)
    with pytest.raises(SandboxError, match="3 proxy runs are too few"):
        fit_targets(weights[:3], {name: values[:3] for name, values in losses.items()}, seed=0)


# ----------------------------------------------------------------------------- the written policy


def test_the_proposed_policy_round_trips_through_factory_plan(build, tmp_path):
    policy = sandbox_policy(heldout_fraction=0.5).model_copy(update={"stable": PhaseRules(method="unimax")})
    index = read_index(build)
    space = mixture_space(index, training_index(index, select_heldout(index, policy.sandbox)), policy)
    units = to_units(np.array([0.3, 0.2, 0.5]), space.caps)  # sft is capped at 0.1111
    data = proposal_policy(policy, space.names, units)
    assert data["stable"] == {"method": "unimax", "targets": {"news": 0.3333, "sft": 0.1111, "web": 0.5556}}
    path = tmp_path / "proposed.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert load_policy(path).name == "default-sandbox"
    result = CliRunner().invoke(app, ["plan", "--build", str(build), "--policy", str(path)])
    assert result.exit_code == 0, result.output
    stable = json.loads((build / "manifests" / "stable.json").read_text())
    assert {s["name"]: s["planned_tokens"] for s in stable["sources"]} == {"news": 2400, "sft": 800, "web": 4000}


# ----------------------------------------------------------------------------- scaling


def test_scaling_fit_recovers_a_power_law_and_says_where_the_advantage_goes():
    params = [1e5, 4e5, 1.6e6]
    prior = [10 * n ** -0.1 for n in params]
    proposal = [9 * n ** -0.1 for n in params]  # 10% lower at every size: the gap shrinks in nats as loss falls
    check = scaling_check(params, prior, proposal)
    assert check["fits"]["prior"]["alpha"] == pytest.approx(0.1)
    assert check["fits"]["proposal"]["A"] == pytest.approx(9)
    assert check["extrapolated"]["advantage"] == pytest.approx(1 * (1.6e7) ** -0.1)
    assert check["verdict"].startswith("advantage shrinks with size")
    assert "one proxy size only" in scaling_check([1e5], [3.0], [2.9])["verdict"]
    assert "no better than the prior" in scaling_check(params, proposal, prior)["verdict"]
