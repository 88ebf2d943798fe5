"""The planner on a hand-made build: known answers, the repetition cap over both phases, infeasible policies,
the schema round trip, determinism, the plan view, `--check` and the `factory plan` command."""

import json
import shutil

import pytest
from support.builds import POLICIES
from support.handmade import make_build
from typer.testing import CliRunner

from datafactory.app.cli import app
from datafactory.factory.catalog import query
from datafactory.factory.manifest import ManifestError, load_manifest, validate_manifest
from datafactory.mixtures.check import check_manifest
from datafactory.mixtures.methods import InfeasiblePlan
from datafactory.mixtures.planner import mean_quality, plan, read_plan
from datafactory.mixtures.policy import AnnealRules, PhaseRules, Policy


@pytest.fixture
def build(tmp_path):
    return make_build(tmp_path / "build")


def manifests(written) -> tuple[dict, dict]:
    return tuple(json.loads(written[phase].read_text()) for phase in ("stable", "anneal"))


def planned(manifest: dict) -> dict[str, int]:
    return {source["name"]: source["planned_tokens"] for source in manifest["sources"]}


def passes(*phases: dict) -> dict[str, float]:
    """Passes over each shard, all phases together."""
    out: dict[str, float] = {}
    for manifest in phases:
        for source in manifest["sources"]:
            for shard in source["shards"]:
                out[shard["path"]] = out.get(shard["path"], 0.0) + source["planned_tokens"] / source["available_tokens"]
    return out


def test_unimax_over_languages_with_the_cap_counted_over_both_phases(build):
    policy = Policy(total_tokens=20_000, group_by="lang", stable=PhaseRules(method="unimax"))
    stable, anneal = manifests(plan(build, policy))
    # anneal (2,000): top pool 1,400 by natural proportions (en:high 1,600, sw:high 100 tokens) -> 1,318 / 82;
    # rest pool 600 (en:mid 5,400, sw:mid 300) -> 568 / 32. sw's busiest shard (high) already has 0.82 passes,
    # so UniMax's uniform 9,000 for sw is capped at (4 - 0.82) x 400 = 1,272 and en takes the rest.
    assert planned(anneal) == {"en:high": 1318, "sw:high": 82, "en:mid": 568, "sw:mid": 32}
    assert planned(stable) == {"en": 16728, "sw": 1272}
    assert passes(stable, anneal)["shards/web/sw/high/part000-00000.arrow"] == pytest.approx(4.0)
    assert stable["lr_schedule"] == anneal["lr_schedule"] == {
        "total_tokens": 20_000, "warmup_tokens": 200, "decay_start_tokens": 18_000, "decay_tokens": 2_000,
        "decay_shape": "linear"}
    assert stable["next_phase"] == "anneal.json" and "next_phase" not in anneal


def test_per_language_targets(build):
    policy = Policy(total_tokens=20_000, group_by="lang", stable=PhaseRules(targets={"sw": 0.05}))
    stable, _ = manifests(plan(build, policy))
    assert planned(stable) == {"en": 17_100, "sw": 900}
    assert {s["name"]: s["weight"] for s in stable["sources"]} == {"en": 0.95, "sw": 0.05}


def test_sft_sources_join_the_anneal_whatever_their_bucket(build):
    policy = Policy(total_tokens=10_000, anneal=AnnealRules(sources=["sft"], targets={"sft": 0.2}))
    stable, anneal = manifests(plan(build, policy))
    assert planned(anneal)["sft"] == 200  # 20% of the 1,000 anneal tokens
    assert sum(planned(anneal)[name] for name in ("sft", "news:high", "web:high")) == 700  # top_share 0.7
    sft = next(source for source in anneal["sources"] if source["name"] == "sft")
    assert [shard["path"] for shard in sft["shards"]] == ["shards/sft/en/low/part000-00000.arrow"]
    assert {s["name"] for s in stable["sources"]} == {"web", "news", "sft"}


@pytest.mark.parametrize("total", [2_000, 12_600, 30_000, 45_000])
@pytest.mark.parametrize("method", ["natural", "temperature", "unimax"])
def test_repetition_cap_is_never_exceeded(build, total, method):
    rules = {"method": method} | ({"temperature": 2.0} if method == "temperature" else {})
    policy = Policy(total_tokens=total, max_epochs=4, stable=PhaseRules(**rules),
                    anneal=AnnealRules(**rules, top_share=0.5))
    try:
        stable, anneal = manifests(plan(build, policy))
    except InfeasiblePlan as err:
        assert total > 12_600 and "repetition cap" in str(err)
        return
    assert stable["token_budget"] + anneal["token_budget"] == total
    assert max(passes(stable, anneal).values()) <= 4 + 1e-9
    for manifest in (stable, anneal):
        assert sum(planned(manifest).values()) == manifest["token_budget"]


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (Policy(total_tokens=20_000, anneal_fraction=0.5),
         r"anneal phase \(top pool, 70% of its tokens\) needs 7,000 tokens from news:high, web:high but they supply "
         r"at most 6,800 within the repetition cap: lower anneal_fraction or anneal.top_share, raise max_epochs"),
        (Policy(total_tokens=50_000),
         "stable phase needs 45,000 tokens .* counting the anneal's passes over the same shards"),
        (Policy(total_tokens=20_000, group_by="lang", stable=PhaseRules(targets={"sw": 0.1})),
         r"stable phase: the target for sw needs 1,800 tokens, 4.50 epochs of its 400, past the 1,272 "
         r"\(3.18 epochs\) the repetition cap leaves it: lower that target"),
        (Policy(stable=PhaseRules(targets={"web": 0.5, "news": 0.2, "sft": 0.05})),
         "targets cover 0.75 of the tokens and no other group is left .* weights cannot sum to one"),
        (Policy(stable=PhaseRules(targets={"blog": 0.1})),
         r"stable.targets names \['blog'\], which are not stable groups of this build \(group_by: source; groups: "
         r"news, sft, web\): fix the names"),
        (Policy(anneal=AnnealRules(targets={"web:high": 0.5, "news:high": 0.3})),
         r"anneal phase \(top pool, 70% of its tokens\): targets take 1,008 of its 882 tokens"),
        (Policy(anneal=AnnealRules(sources=["chat"])),
         r"anneal.sources names \['chat'\], which this build does not have \(its sources: news, sft, web\)"),
        (Policy(total_tokens=5), "raise total_tokens so both phases get some"),
    ],
)
def test_infeasible_policies_are_rejected_with_what_to_change(build, policy, message):
    with pytest.raises(InfeasiblePlan, match=message):
        plan(build, policy)


def test_an_anneal_without_top_data_is_rejected(tmp_path):
    build = make_build(tmp_path / "b", [("web", "en", "mid", 1_000, 0.5)])
    with pytest.raises(InfeasiblePlan, match=r"top pool is empty: no shards in anneal.buckets \['high'\]"):
        plan(build, Policy())


def test_manifests_round_trip_through_the_schema(build):
    written = plan(build, Policy())
    for phase in ("stable", "anneal"):
        manifest, root = load_manifest(written[phase])
        assert manifest["phase"] == phase and root == build.resolve()
        assert json.dumps(manifest, indent=2, sort_keys=True) + "\n" == written[phase].read_text()
        assert check_manifest(written[phase]) == []
        assert set(manifest["tokenizer"]) == {"path", "sha256", "vocab_size", "bos_id", "eos_id", "pad_id"}
        broken = {**manifest, "sources": [{**manifest["sources"][0], "weight": 1.5}]}
        with pytest.raises(ManifestError, match="sources/0/weight"):
            validate_manifest(broken)


def test_same_catalog_policy_and_seed_give_identical_bytes(build, tmp_path):
    policy = Policy(total_tokens=9_000, seed=5, stable=PhaseRules(method="temperature", temperature=3.0))
    first = {phase: path.read_bytes() for phase, path in plan(build, policy).items() if phase != "plan"}
    copy = shutil.copytree(build, tmp_path / "copy")
    for target in (build, copy):
        again = {phase: path.read_bytes() for phase, path in plan(target, policy).items() if phase != "plan"}
        assert again == first


def test_plan_table_is_a_catalog_view_and_the_anneal_reads_better_data(build):
    plan(build, Policy(total_tokens=10_000))
    columns, rows = query(build, "SELECT phase, sum(planned_tokens), count(*) FROM plan GROUP BY phase ORDER BY 1")
    assert rows == [("anneal", 1_000, 4), ("stable", 9_000, 3)]
    table = read_plan(build)
    assert {"source", "available_tokens", "weight", "planned_tokens", "epochs", "mean_quality"} <= set(table[0])
    stable = mean_quality([row for row in table if row["phase"] == "stable"])
    anneal = mean_quality([row for row in table if row["phase"] == "anneal"])
    assert anneal > stable


def test_check_finds_what_no_longer_matches_the_build(build):
    written = plan(build, Policy(total_tokens=10_000))
    assert check_manifest(written["stable"]) == []
    stable = json.loads(written["stable"].read_text())
    stable["sources"][0]["planned_tokens"] += 1
    stable["sources"][0]["epochs"] = 9.0
    written["stable"].write_text(json.dumps(stable))
    (build / stable["sources"][1]["shards"][0]["path"]).write_bytes(b"changed")
    tokenizer = json.loads((build / "tokenizer" / "tokenizer.json").read_text())
    (build / "tokenizer" / "tokenizer.json").write_text(json.dumps({**tokenizer, "vocab_size": 99}))
    problems = "\n".join(check_manifest(written["stable"]))
    assert "sha256 differs from the manifest" in problems
    assert "planned tokens sum to 9,001, token_budget is 9,000" in problems
    assert "epochs 9.0 but" in problems and "past max_epochs 4" in problems
    assert "tokenizer.vocab_size: manifest has 100, the build 99" in problems


def test_factory_plan_command(build):
    runner = CliRunner()
    result = runner.invoke(app, ["plan", "--build", str(build), "--policy", str(POLICIES / "unimax.yaml")])
    assert result.exit_code == 0, result.output
    assert "stable phase" in result.output and "mean quality" in result.output
    stable = build / "manifests" / "stable.json"
    result = runner.invoke(app, ["plan", "--check", str(stable)])
    assert result.exit_code == 0 and "valid" in result.output, result.output
    stable.write_text(stable.read_text().replace('"seq_len": 16', '"seq_len": 32'))
    result = runner.invoke(app, ["plan", "--check", str(stable)])
    assert result.exit_code == 2 and "seq_len 16, the manifest says 32" in result.output, result.output
    (build / "policy.yaml").write_text("total_tokens: 1000000\n")
    result = runner.invoke(app, ["plan", "--build", str(build), "--policy", str(build / "policy.yaml")])
    assert result.exit_code == 2 and "within the repetition cap" in result.output, result.output
