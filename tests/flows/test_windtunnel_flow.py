"""The wind tunnel end to end on a synthetic build with a small grid: every setting trains one stable trunk and
decays off it at three budgets, the report holds the prediction and validation the checks rely on (fractions, with
intervals), the written trainer config and policy feed `factory train` and `factory plan`, and a rerun reads
finished proxies back. `run_windtunnel` is the flow's body, so no Prefect server is started here."""

import json

import pytest
import yaml
from prefect.task_runners import ProcessPoolTaskRunner
from support.sandbox_build import SEQ_LEN, make_sandbox_build
from typer.testing import CliRunner

from datafactory.app.cli import app
from datafactory.factory.config import ConfigError
from datafactory.flows.windtunnel import WindTunnelError, model_windtunnel, run_windtunnel, windtunnel_flow
from datafactory.mixtures.policy import load_policy
from datafactory.trainer.settings import load_train_settings

pytestmark = pytest.mark.slow

WIDTHS, LRS, BATCHES, BUDGETS = [16, 24, 32, 48], [0.003, 0.01, 0.03], [4, 8], [4096, 8192, 16384]
POLICY = {"name": "tunnel", "anneal_fraction": 0.25, "warmup_fraction": 0.02,
          "windtunnel": {"widths": WIDTHS, "learning_rates": LRS, "batch_sizes": BATCHES, "token_budgets": BUDGETS,
                         "eval_tokens": 1024, "model": {"n_layers": 1, "n_heads": 2, "n_kv_heads": 1},
                         "target": {"model": {"dim": 256, "n_layers": 1, "n_heads": 2, "n_kv_heads": 1},
                                    "tokens": 20_000}}}


def write_policy(path, policy: dict = POLICY):
    path.write_text(yaml.safe_dump(policy), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tunnel(tmp_path_factory):
    root = make_sandbox_build(tmp_path_factory.mktemp("tunnel") / "build")
    policy_file = write_policy(root.parent / "policy.yaml")
    report = run_windtunnel(root, load_policy(policy_file), device="cpu", threads=1)
    return root, policy_file, report


def test_every_setting_branches_three_decays_off_one_trunk(tunnel):
    root, _, report = tunnel
    runs = sorted((root / "windtunnel" / "runs").iterdir())
    assert len(runs) == len(WIDTHS) * len(LRS) * len(BATCHES) == report["grid"]["runs"]
    result = json.loads((root / "windtunnel" / "runs" / "w16-lr0.01-b4" / "result.json").read_text())
    branches = result["branches"]
    assert [branch["tokens"] for branch in branches] == BUDGETS  # 4 x 32 tokens a step divides every budget
    for budget, branch in zip(BUDGETS, branches, strict=True):
        steps = budget // (4 * SEQ_LEN)
        assert branch["decay_start_step"] == round(0.75 * steps) and branch["steps"] == steps
        assert len(branch["curve"]["loss"]) == steps  # the trunk's steps up to the branch, then its decay
        lrs = branch["curve"]["lr"]
        assert lrs[branch["decay_start_step"] - 1] == pytest.approx(0.01) and lrs[-1] < 0.01 * 0.2
    trunk = root / "windtunnel" / "runs" / "w16-lr0.01-b4" / "stable" / "checkpoints"
    assert sorted(path.name for path in trunk.glob("branch-*.pt")) == ["branch-0.pt", "branch-1.pt", "branch-2.pt"]
    # the shared trunk: the short branch's stable steps are the long one's first steps
    short, long = branches[0]["curve"]["loss"], branches[2]["curve"]["loss"]
    assert short[:branches[0]["decay_start_step"]] == long[:branches[0]["decay_start_step"]]


def test_the_report_holds_what_the_checks_rely_on(tunnel):
    root, _, report = tunnel
    assert json.loads((root / "windtunnel" / "report.json").read_text()) == json.loads(json.dumps(report))
    prediction, validation = report["prediction"], report["validation"]
    for name in ("peak_lr", "batch_size", "loss"):
        assert prediction[name]["low"] <= prediction[name]["value"] <= prediction[name]["high"], name
    assert 0 <= validation["loss_gap"] < 0.5 and 0 <= validation["curve_mape"] < 0.5  # fractions, not percents
    assert validation["width"] == max(WIDTHS) and validation["tokens"] == max(BUDGETS)
    assert prediction["decay_fraction"] in load_policy(None).windtunnel.decay_fractions
    assert len(report["optima"]) == len(WIDTHS) * len(BUDGETS)
    assert len(report["runs"]) == len(WIDTHS) * len(LRS) * len(BATCHES) * len(BUDGETS)
    assert not [warning for warning in report["warnings"] if "cannot be planned" in warning]
    markdown = (root / "windtunnel" / "report.md").read_text()
    assert "## Validation at the held-out width 48" in markdown and "factory train" in markdown


def test_the_written_config_and_policy_feed_train_and_plan(tunnel):
    root, _, report = tunnel
    settings = load_train_settings(root / "windtunnel" / "trainer.yaml")
    assert settings.model["mup_base_dim"] == WIDTHS[0] and settings.model["dim"] == 256
    assert settings.batch_size == report["prediction"]["batch_sequences"]
    assert settings.lr == pytest.approx(report["prediction"]["peak_lr"]["value"])
    written = load_policy(root / "windtunnel" / "policy.yaml")
    assert written.total_tokens == 20_000 and written.anneal_fraction == report["prediction"]["decay_fraction"]
    planned = CliRunner().invoke(app, ["plan", "--build", str(root), "--policy", str(root / "windtunnel" /
                                                                                       "policy.yaml")])
    assert planned.exit_code == 0, planned.output
    trained = CliRunner().invoke(app, ["train", str(root / "manifests" / "stable.json"), "--config",
                                       str(root / "windtunnel" / "trainer.yaml"), "--max-steps", "2", "--no-compile",
                                       "--no-trace", "--out", str(root / "runs" / "target")])
    assert trained.exit_code == 0, trained.output
    state = json.loads((root / "runs" / "target" / "metrics.jsonl").read_text().splitlines()[-1])
    assert state["step"] == 2


def test_a_rerun_reads_finished_proxies_back(tunnel):
    root, policy_file, report = tunnel
    results = sorted((root / "windtunnel" / "runs").glob("*/result.json"))
    stamps = [path.stat().st_mtime_ns for path in results]
    result = CliRunner().invoke(app, ["windtunnel", "--build", str(root), "--policy", str(policy_file),
                                      "--no-prefect"])
    assert result.exit_code == 0, result.output
    assert "loss gap" in result.output and "windtunnel/trainer.yaml" in result.output
    assert [path.stat().st_mtime_ns for path in results] == stamps
    assert json.loads((root / "windtunnel" / "report.json").read_text())["prediction"] == report["prediction"]


def test_a_target_larger_than_the_build_is_warned_about(tunnel):
    root, policy_file, _ = tunnel
    policy = load_policy(policy_file)
    larger = policy.model_copy(update={"windtunnel": policy.windtunnel.model_copy(update={
        "target": policy.windtunnel.target.model_copy(update={"tokens": 10_000_000})})})
    report = run_windtunnel(root, larger, device="cpu", threads=1)  # the proxies are read back: only the fits run
    assert any("policy.yaml cannot be planned on this build" in warning for warning in report["warnings"])
    assert "cannot be planned" in (root / "windtunnel" / "report.md").read_text()


def test_bad_settings_fail_before_anything_trains(tunnel, tmp_path):
    root, _, _ = tunnel
    odd = write_policy(tmp_path / "odd.yaml", POLICY | {"windtunnel": POLICY["windtunnel"] | {"widths": [16, 24, 32,
                                                                                                       50]}})
    with pytest.raises(WindTunnelError, match="width 50: dim 50 is not divisible by n_heads|head_dim 25"):
        run_windtunnel(root, load_policy(odd), device="cpu")
    with pytest.raises(ConfigError, match="widths must be positive and strictly increasing"):
        load_policy(write_policy(tmp_path / "down.yaml", {"windtunnel": {"widths": [64, 32, 96, 128]}}))
    result = CliRunner().invoke(app, ["windtunnel", "--build", str(root), "--policy", str(odd), "--no-prefect"])
    assert result.exit_code != 0 and "width 50" in result.output and "Traceback" not in result.output


def test_the_flow_runs_one_task_per_proxy_in_processes():
    assert model_windtunnel.name == "model-windtunnel"
    runner = windtunnel_flow(workers=2).task_runner
    assert isinstance(runner, ProcessPoolTaskRunner) and runner._max_workers == 2
