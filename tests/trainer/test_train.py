"""Training runs on the synthetic build: loss goes down, compile works on CPU, the mixture switches at decay
start, and a decay branched off the stable-end checkpoint replays the uninterrupted one."""

import logging

import pytest
import torch
from support.synthetic import build_corpus, read_metrics

from datafactory.trainer.checkpoints import latest_checkpoint, load_checkpoint
from datafactory.trainer.train import train

FAST = {"model": "test", "batch_size": 8, "compile": False, "device": "cpu", "log_every": 1}


def test_loss_goes_down(tmp_path):
    corpus = build_corpus(tmp_path / "build", decay_start_tokens=30 * 256, decay_tokens=256)
    result = train(corpus.stable, out_dir=tmp_path / "run", max_steps=30, checkpoint_every=0, **FAST)
    assert result.steps == 30 and len(result.losses) == 30 and result.tokens == 30 * 8 * 32
    assert result.first_loss > 3.5  # about ln(64) at initialisation
    assert sum(result.losses[-5:]) / 5 < result.first_loss - 1.0
    assert result.tokens_per_s > 0 and result.mfu is None  # no peak FLOP/s known on CPU
    lines = read_metrics(result.metrics_path)
    assert [line["step"] for line in lines] == list(range(1, 31))
    assert set(lines[-1]) >= {"step", "phase", "lr", "loss", "loss_per_source", "tokens", "tokens_per_s", "mfu"}
    assert set(lines[-1]["loss_per_source"]) <= {"web", "code"}
    assert result.checkpoint_path == latest_checkpoint(tmp_path / "run")


def test_compile_runs_on_cpu(corpus, tmp_path, caplog):
    eager = train(corpus.stable, out_dir=tmp_path / "eager", max_steps=3, checkpoint_every=0, **FAST)
    with caplog.at_level(logging.WARNING):
        compiled = train(corpus.stable, out_dir=tmp_path / "compiled", max_steps=3, checkpoint_every=0,
                         **{**FAST, "compile": True})
    assert "torch.compile failed" not in caplog.text
    assert compiled.losses == pytest.approx(eager.losses, abs=1e-4)


def test_phase_switch_at_decay_start_and_anneal_branch(corpus, tmp_path):
    full = train(corpus.stable, out_dir=tmp_path / "full", checkpoint_every=0, **FAST)
    lines = read_metrics(full.metrics_path)
    # 256 tokens per step: the decay and the anneal mixture both start after step 8 (2048 tokens)
    assert [line["phase"] for line in lines] == ["stable"] * 8 + ["anneal"] * 4
    assert all(set(line["loss_per_source"]) <= {"web", "code"} for line in lines[:8])
    assert all(set(line["loss_per_source"]) <= {"web", "hq"} for line in lines[8:])
    assert any("hq" in line["loss_per_source"] for line in lines[8:])
    peak = max(line["lr"] for line in lines)
    assert lines[7]["lr"] == peak and lines[8]["lr"] < peak
    assert lines[-1]["lr"] == pytest.approx(0.1 * peak)
    assert full.phase == "anneal" and full.stable_checkpoint_path is not None
    stable_end = load_checkpoint(full.stable_checkpoint_path, torch.device("cpu"))
    assert (stable_end["step"], stable_end["tokens"], stable_end["phase"]) == (8, 2048, "stable")

    # branching a decay off the stable-end checkpoint (via the anneal manifest) replays the same decay
    branch = train(corpus.anneal, out_dir=tmp_path / "branch", anneal_from=full.stable_checkpoint_path,
                   checkpoint_every=0, **FAST)
    assert branch.start_step == 8 and branch.steps == 12 and branch.phase == "anneal"
    assert branch.losses == pytest.approx(full.losses[8:], abs=1e-6)
    assert [line["lr"] for line in read_metrics(branch.metrics_path)] == [line["lr"] for line in lines[8:]]
