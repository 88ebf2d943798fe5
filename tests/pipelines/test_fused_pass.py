"""Per-document stages fused into one pass (language ID, signals and heuristics run in ingest's) write what they
write one at a time: the same parts, ledger and markers. A failure in the pass leaves no stage of it done; a resume,
or a threshold change, runs a follower alone (heading a pass of the stages after it)."""

from __future__ import annotations

import pytest
from support.builds import copy_build

from datafactory.factory.config import load_config
from datafactory.factory.markers import read_marker
from datafactory.pipelines import registry
from datafactory.pipelines.signals import MeasureSignals

PASS = ("langid", "signals", "heuristics")


def test_ingest_heads_a_pass_of_the_stages_that_fuse_behind_it():
    assert [stage.name for stage in registry.stage("ingest").fused_followers()] == list(PASS)
    assert [stage.name for stage in registry.stage("signals").fused_followers()] == ["heuristics"]  # on a resume
    assert registry.stage("heuristics").fused_followers() == ()
    assert registry.stage("dedup").fused_followers() == ()  # dedup shuffles: a boundary


def run_alone(name, config, out):
    stage = registry.stage(name)
    return stage.implementation().run(stage.job(config, out))


def outputs(out, name):
    marker = read_marker(out / "stages" / name)
    return {path: (out / path).read_bytes() for path in marker["outputs"]}, marker


def assert_same_outputs(out, reference, names):
    """Every part, ledger part and marker of the ``names`` stages equals the reference build's, byte for byte."""
    for name in names:
        assert outputs(out, name) == outputs(reference, name), name


def test_a_pass_writes_what_the_stages_write_one_at_a_time(small_corpus, reference_build, tmp_path):
    """The reference build ran ingest's pass; here each stage runs alone. Language ID keeps most of the demo corpus,
    so no stage stores the text either way and every part, ledger part and marker is byte-identical."""
    config = load_config(small_corpus / "test.yaml")
    alone = copy_build(reference_build, tmp_path / "alone")
    for name in ("ingest", *PASS):
        (alone / "stages" / name / "_SUCCESS.json").unlink()
    for name in ("ingest", *PASS):
        assert not run_alone(name, config, alone).skipped
    assert_same_outputs(alone, reference_build, ("ingest", *PASS))


def test_the_pass_reports_every_stage_it_ran(small_corpus, reference_build, tmp_path):
    """Resumed with ingest done, language ID heads the pass of the stages after it."""
    config = load_config(small_corpus / "test.yaml")
    out = copy_build(reference_build, tmp_path / "build")
    (out / "stages" / "langid" / "_SUCCESS.json").unlink()
    assert registry.stage("ingest").execute(config, out).skipped
    result = registry.stage("langid").execute(config, out)
    assert [fused.stage for fused in result.fused] == list(PASS[1:])
    assert all(fused.fused_into == "langid" and not fused.skipped for fused in result.fused)
    assert result.timing().endswith("s; signals, heuristics in its pass")
    assert result.fused[0].timing() == "in langid's pass"
    for fused in result.fused:
        assert fused.counts == read_marker(out / "stages" / fused.stage)["counts"]
        assert registry.stage(fused.stage).execute(config, out).skipped  # its own task finds it done
    assert_same_outputs(out, reference_build, PASS)


def test_a_failure_in_the_pass_leaves_none_of_its_stages_done(small_corpus, reference_build, tmp_path, monkeypatch):
    config = load_config(small_corpus / "test.yaml")
    out = copy_build(reference_build, tmp_path / "build")
    (out / "stages" / "ingest" / "_SUCCESS.json").unlink()

    def broken(self, rows):
        raise RuntimeError("signals broke")

    monkeypatch.setattr(MeasureSignals, "annotate", broken)
    with pytest.raises(RuntimeError, match="signals broke"):
        registry.stage("ingest").execute(config, out)
    assert all(read_marker(out / "stages" / name) is None for name in ("ingest", *PASS))
    monkeypatch.undo()
    rerun = registry.stage("ingest").execute(config, out)  # the rerun runs the whole pass
    assert [fused.stage for fused in rerun.fused] == list(PASS)
    assert_same_outputs(out, reference_build, ("ingest", *PASS))


def test_a_follower_whose_marker_is_gone_runs_alone(small_corpus, reference_build, tmp_path):
    config = load_config(small_corpus / "test.yaml")
    out = copy_build(reference_build, tmp_path / "build")
    (out / "stages" / "heuristics" / "_SUCCESS.json").unlink()
    for name in ("ingest", *PASS[:-1]):
        assert registry.stage(name).execute(config, out).skipped
    rerun = registry.stage("heuristics").execute(config, out)
    assert not rerun.skipped and rerun.fused_into is None
    assert_same_outputs(out, reference_build, ["heuristics"])
