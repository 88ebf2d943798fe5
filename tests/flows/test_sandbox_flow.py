"""The model sandbox end to end on a synthetic build where one source (`helper`) shares the held-out target's pattern:
eight proxy runs, the proposal upweights helper, the fit is scored on held-out runs, the written policy plans, and a
rerun reads finished proxies back. `run_sandbox` is the flow's body, so no Prefect server is started here."""

import json
import math

import pytest
from prefect.task_runners import ProcessPoolTaskRunner
from support.sandbox_build import make_sandbox_build, write_policy
from typer.testing import CliRunner

from datafactory.app.cli import app
from datafactory.flows.sandbox import model_sandbox, run_sandbox, sandbox_flow
from datafactory.mixtures.policy import load_policy
from datafactory.trainer.evaluate import evaluate


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    root = make_sandbox_build(tmp_path_factory.mktemp("sandbox") / "build")
    policy = load_policy(write_policy(root.parent / "policy.yaml"))
    # One torch thread: tiny models gain nothing from more, and crawl when other processes hold the cores.
    report = run_sandbox(root, policy, device="cpu", threads=1)
    return root, policy, report


def test_the_proposal_upweights_the_source_that_helps_the_target(sandbox):
    _, _, report = sandbox
    prior, proposal = report["prior"], report["proposal"]
    assert report["components"] == ["code", "helper", "web"]  # val is held out whole: a target, not a component
    assert proposal["weights"]["helper"] > prior["helper"] + 0.3
    assert proposal["measured"]["objective"] < proposal["prior_measured"]["objective"] - 0.1
    assert proposal["predicted"]["objective"] < proposal["prior_predicted"]["objective"]
    assert abs(proposal["predicted"]["objective"] - proposal["measured"]["objective"]) < 0.3
    assert all(proposal["weights"][name] <= report["caps"][name] for name in report["components"])
    assert report["warnings"] == []


def test_the_regression_is_checked_on_held_out_runs(sandbox):
    _, _, report = sandbox
    assert [run["name"] for run in report["runs"]] == [f"c{i:03d}" for i in range(8)]
    assert report["runs"][0]["weights"] == pytest.approx(report["prior"], abs=1e-4)  # the baseline is run 0
    fit = report["fit"]["val"]
    assert set(fit) == {"linear", "gbm", "winner"}
    best = fit[fit["winner"]]
    assert best["r2"] > 0.3 and best["spearman"] > 0.6
    assert report["fit"]["objective"] == best  # one target: the objective is its loss


def test_the_written_policy_round_trips_through_factory_plan(sandbox):
    root, _, report = sandbox
    written = root / "sandbox" / "policy.yaml"
    proposed = {name: weight for name, weight in report["proposal"]["weights"].items() if weight > 0}
    assert load_policy(written).stable.targets == proposed
    result = CliRunner().invoke(app, ["plan", "--build", str(root), "--policy", str(written)])
    assert result.exit_code == 0, result.output
    stable = json.loads((root / "manifests" / "stable.json").read_text())
    weights = {source["name"]: source["weight"] for source in stable["sources"]}
    assert weights == pytest.approx(proposed, abs=1e-3)
    check = CliRunner().invoke(app, ["plan", "--check", str(root / "manifests" / "stable.json")])
    assert check.exit_code == 0, check.output


def test_report_and_scaling_check_are_written(sandbox):
    root, _, report = sandbox
    assert json.loads((root / "sandbox" / "report.json").read_text()) == json.loads(json.dumps(report))
    markdown = (root / "sandbox" / "report.md").read_text()
    assert "| val |" in markdown and "| proposal |" in markdown and "## Scaling check" in markdown
    scaling = report["scaling"]
    assert len(scaling["params"]) == 2 and scaling["params"][0] < scaling["params"][1]
    assert all(math.isfinite(loss) for loss in scaling["prior"] + scaling["proposal"])
    assert scaling["prior"][1] < scaling["prior"][0]  # the larger proxy learns more in the same steps
    assert scaling["fits"]["prior"]["alpha"] > 0 and scaling["verdict"].startswith("advantage")


def test_validation_loss_reads_the_same_tokens_every_time(sandbox):
    root, policy, _ = sandbox
    checkpoint = next((root / "sandbox" / "runs" / "c000" / "checkpoints").glob("step-*.pt"))
    first = evaluate(root / "sandbox" / "validation.json", checkpoint, batch_size=8, max_tokens=1000, device="cpu")
    again = evaluate(root / "sandbox" / "validation.json", checkpoint, batch_size=16, max_tokens=1000, device="cpu")
    assert set(first) == {"val"}
    assert first["val"].rows == math.ceil(1000 / 32) and first["val"].tokens <= first["val"].rows * 32
    assert first["val"].loss == pytest.approx(again["val"].loss, rel=1e-5)  # batching does not change it
    assert 0 < first["val"].loss < math.log(64) + 0.5


def test_a_rerun_reads_finished_proxies_back(sandbox):
    root, policy, report = sandbox
    results = sorted((root / "sandbox" / "runs").glob("*/result.json"))
    stamps = [path.stat().st_mtime_ns for path in results]
    assert len(results) == 8 + 3  # candidates, the confirmation, prior and proposal at the second size
    assert run_sandbox(root, policy, device="cpu", threads=1) == report
    assert [path.stat().st_mtime_ns for path in results] == stamps


def test_the_flow_runs_one_task_per_proxy_in_processes():
    assert model_sandbox.name == "model-sandbox"
    runner = sandbox_flow(workers=3).task_runner
    assert isinstance(runner, ProcessPoolTaskRunner) and runner._max_workers == 3
