"""`factory trace`: a traced run's segments land on the documents whose tokens they hold, the suspects are listed
with what the factory knows of them, and a reviewed blocklist drops those documents at the next ingest."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import yaml
from support.builds import copy_build
from typer.testing import CliRunner

from datafactory.app.cli import app
from datafactory.factory.catalog import build_catalog, query
from datafactory.factory.config import load_config
from datafactory.filters.blocklist import FLAGGED_BY_TRAINING
from datafactory.pipelines.registry import run_stage_named
from datafactory.trainer.train import train


@pytest.fixture(scope="module")
def traced(reference_build, tmp_path_factory):
    build = copy_build(reference_build, tmp_path_factory.mktemp("traced") / "build")
    result = train(build / "manifests" / "stable.json", model="test", out_dir=build / "runs" / "stable",
                   batch_size=8, compile=False, device="cpu", log_every=8, checkpoint_every=0)
    build_catalog(build)
    return build, result.steps


def test_every_traced_segment_lies_inside_its_document(traced):
    traced, trained_steps = traced
    _, rows = query(traced, """
        SELECT count(*), count(*) FILTER (WHERE g.position >= t.first_row * (s.seq_len + 1) + t."offset"
                                          AND g.position < t.first_row * (s.seq_len + 1) + t."offset" + t.n_tokens)
        FROM segment_loss l
        JOIN read_parquet('""" + str(traced / "runs/stable/trace/segments-*.parquet") + """') g
          USING (step, shard, row)
        JOIN tokenize t ON t.doc_id = l.doc_id JOIN shards s ON s.path = t.shard
        WHERE g.tokens >= 8 AND g.loss = l.loss""")
    (total, inside), = rows
    assert total > 50 and inside == total
    _, steps = query(traced, "SELECT count(*), count(DISTINCT step) FROM train_steps WHERE run = 'stable'")
    assert steps == [(trained_steps, trained_steps)]


def test_trace_lists_suspects_and_the_blocklist_drops_them_at_ingest(traced, small_corpus, tmp_path):
    traced, _ = traced
    blocklist = tmp_path / "flagged.txt"
    result = CliRunner().invoke(app, ["trace", "--build", str(traced), "--run", "stable", "--top", "3",
                                      "--blocklist", str(blocklist)], terminal_width=220)
    assert result.exit_code == 0, result.output
    assert "stood out high" in result.output and "stood out low" in result.output
    flagged = [line.split()[0] for line in blocklist.read_text().splitlines() if not line.startswith("#")]
    assert len(flagged) == 6
    config = yaml.safe_load((small_corpus / "test.yaml").read_text()) | {"ingest": {"blocklists": [str(blocklist)]}}
    path = small_corpus / "blocked.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "rebuild"
    run_stage_named("ingest", load_config(path), out)
    ledger = pq.read_table(out / "ledger").to_pylist()
    assert sorted(row["doc_id"] for row in ledger if row["reason"] == FLAGGED_BY_TRAINING) == sorted(flagged)
    assert all(row["status"] == "dropped" and row["stage"] == "ingest" for row in ledger
               if row["reason"] == FLAGGED_BY_TRAINING)


def test_trace_names_the_runs_it_knows(traced):
    traced, _ = traced
    result = CliRunner().invoke(app, ["trace", "--build", str(traced), "--run", "nope"])
    assert result.exit_code == 2 and "traced runs: stable" in result.output


def test_the_report_draws_the_traced_loss(traced):
    from datafactory.app.report import write_report

    traced, _ = traced
    page = write_report(traced).read_text(encoding="utf-8")
    assert "Loss by quality bucket over training" in page and "could not draw" not in page


@pytest.mark.slow
def test_planted_bad_pages_lead_document_loss(shared_data, tmp_path):
    """Real English pages with 5% bad ones the rules let through, 1,600 traced steps of a small model on CPU: the
    shuffled pages lead the high end of document_loss, the templated ones the low end (benchmarks/trace_planted.py
    measures the same over several seeds)."""
    from support.planted_training import build_train_and_trace, precision_at, write_planted_corpus

    truth = write_planted_corpus(shared_data, tmp_path / "in", 800, 0.05, seed=1)
    run = build_train_and_trace(tmp_path / "in", tmp_path / "build", 1600, seed=1)
    assert precision_at(tmp_path / "build", run, truth, "shuffled", 20) >= 0.7
    assert precision_at(tmp_path / "build", run, truth, "templated", 20) >= 0.7


def test_train_options_set_what_is_traced(tmp_path):
    from support.synthetic import build_corpus

    corpus = build_corpus(tmp_path / "build")
    for flags, run in ((["--trace-rows", "2"], "traced"), (["--no-trace"], "untraced")):
        result = CliRunner().invoke(app, ["train", str(corpus.stable), "--out", str(tmp_path / run), "--max-steps",
                                          "3", "--no-compile", *flags])
        assert result.exit_code == 0, result.output
    segments = pq.read_table(sorted((tmp_path / "traced" / "trace").glob("segments-*.parquet"))).to_pylist()
    rows_per_step = [len({(row["shard"], row["row"]) for row in segments if row["step"] == step}) for step in (1, 2, 3)]
    assert rows_per_step == [2, 2, 2]  # the batch has 8 rows; --trace-rows 2 keeps two (no spike this early)
    assert not (tmp_path / "untraced" / "trace").exists() or not any((tmp_path / "untraced" / "trace").iterdir())
