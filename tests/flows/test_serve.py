"""Deployment definitions: the three flows, absolute default parameters, a cron schedule from flag or config."""

from types import SimpleNamespace

from datafactory.app.demo import write_demo_corpus
from datafactory.flows import serve
from datafactory.flows.serve import build_deployments


def test_three_deployments_with_absolute_default_parameters(tmp_path, monkeypatch):
    config = write_demo_corpus(tmp_path / "input", n_docs=20).config
    monkeypatch.chdir(tmp_path)
    build, plan, train = build_deployments(config.relative_to(tmp_path), tmp_path / "out")
    assert [d.name for d in (build, plan, train)] == ["demo"] * 3
    # Loaded by module path: runs start from any directory.
    assert build.entrypoint == "datafactory.flows.build.build_corpus"
    assert build.parameters == {"config_path": str(config), "out_dir": str(tmp_path / "out")}
    assert plan.parameters == {"build_dir": str(tmp_path / "out"), "policy_path": None}
    assert train.parameters["manifest"] == str(tmp_path / "out" / "manifests" / "stable.json")
    assert not build.schedules


def test_a_cron_flag_schedules_only_the_build(tmp_path):
    config = write_demo_corpus(tmp_path / "input", n_docs=20).config
    build, plan, train = build_deployments(config, tmp_path / "out", cron="0 3 * * *", timezone="Europe/Berlin")
    assert [(s.schedule.cron, s.schedule.timezone) for s in build.schedules] == [("0 3 * * *", "Europe/Berlin")]
    assert not plan.schedules and not train.schedules


def test_the_config_schedule_applies_when_no_flag_is_given(tmp_path, monkeypatch):
    config = write_demo_corpus(tmp_path / "input", n_docs=20).config
    loaded = SimpleNamespace(schedule=SimpleNamespace(cron="30 2 * * 1", timezone="UTC"))
    monkeypatch.setattr(serve, "load_config", lambda path: loaded)
    build, _, _ = build_deployments(config, tmp_path / "out")
    assert [s.schedule.cron for s in build.schedules] == ["30 2 * * 1"]
    build, _, _ = build_deployments(config, tmp_path / "out", cron="0 4 * * *")  # the flag wins
    assert [s.schedule.cron for s in build.schedules] == ["0 4 * * *"]
