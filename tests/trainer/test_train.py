"""Training runs on the synthetic build: loss goes down, compile works on CPU, kill + resume and
anneal branching reproduce the uninterrupted loss trajectory, the mixture switches at decay start."""

import json
import logging

import pytest
import torch
from support.synthetic import build_corpus

from datafactory.trainer.train import latest_checkpoint, load_checkpoint, train

FAST = {"model": "test", "batch_size": 8, "compile": False, "device": "cpu", "log_every": 1}


def metrics(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_loss_goes_down(tmp_path):
    corpus = build_corpus(tmp_path / "build", decay_start_tokens=30 * 256, decay_tokens=256)
    result = train(corpus.stable, out_dir=tmp_path / "run", max_steps=30, checkpoint_every=0, **FAST)
    assert result.steps == 30 and len(result.losses) == 30 and result.tokens == 30 * 8 * 32
    assert result.first_loss > 3.5  # about ln(64) at initialisation
    assert sum(result.losses[-5:]) / 5 < result.first_loss - 1.0
    assert result.tokens_per_s > 0 and result.mfu is None  # no peak FLOP/s known on CPU
    lines = metrics(result.metrics_path)
    assert [line["step"] for line in lines] == list(range(1, 31))
    assert set(lines[-1]) >= {"step", "phase", "lr", "loss", "loss_per_source", "tokens", "tokens_per_s", "mfu"}
    assert set(lines[-1]["loss_per_source"]) <= {"web", "code"}
    assert result.checkpoint_path == latest_checkpoint(tmp_path / "run")


def test_mfu_with_a_given_peak(corpus, tmp_path):
    result = train(corpus.stable, out_dir=tmp_path / "run", max_steps=3, checkpoint_every=0,
                   peak_flops=1e12, **FAST)
    assert result.mfu is not None and 0 < result.mfu < 1
    assert all(line["mfu"] is not None for line in metrics(result.metrics_path))


def test_compile_runs_on_cpu(corpus, tmp_path, caplog):
    eager = train(corpus.stable, out_dir=tmp_path / "eager", max_steps=3, checkpoint_every=0, **FAST)
    with caplog.at_level(logging.WARNING):
        compiled = train(corpus.stable, out_dir=tmp_path / "compiled", max_steps=3, checkpoint_every=0,
                         **{**FAST, "compile": True})
    assert "torch.compile failed" not in caplog.text
    assert compiled.losses == pytest.approx(eager.losses, abs=1e-4)


def test_kill_and_resume_continue_the_same_trajectory(corpus, tmp_path):
    reference = train(corpus.stable, out_dir=tmp_path / "reference", checkpoint_every=0, **FAST)
    assert reference.steps == 12  # 3072 tokens / (8 x 32)

    def crash(info):
        if info["step"] == 7:
            raise KeyboardInterrupt("killed")

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(corpus.stable, out_dir=run, checkpoint_every=3, on_step=crash, **FAST)
    assert load_checkpoint(latest_checkpoint(run), torch.device("cpu"))["step"] == 6
    (run / "checkpoints" / ".step-00000009.pt.tmp-999").write_bytes(b"half a checkpoint")
    resumed = train(corpus.stable, out_dir=run, checkpoint_every=3, **FAST)
    assert resumed.start_step == 6 and resumed.steps == 12
    assert resumed.losses == pytest.approx(reference.losses[6:], abs=1e-6)
    assert [line["step"] for line in metrics(resumed.metrics_path)] == list(range(1, 13))
    with pytest.raises(ValueError, match="batch_size"):
        train(corpus.stable, out_dir=run, **{**FAST, "batch_size": 4})


def test_phase_switch_at_decay_start_and_anneal_branch(corpus, tmp_path):
    full = train(corpus.stable, out_dir=tmp_path / "full", checkpoint_every=0, **FAST)
    lines = metrics(full.metrics_path)
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
    assert [line["lr"] for line in metrics(branch.metrics_path)] == [line["lr"] for line in lines[8:]]


def test_branch_from_an_earlier_stable_checkpoint(corpus, tmp_path):
    early = train(corpus.stable, out_dir=tmp_path / "early", max_steps=4, checkpoint_every=0, **FAST)
    branch = train(corpus.stable, out_dir=tmp_path / "branch", anneal_from=early.checkpoint_path,
                   checkpoint_every=0, **FAST)
    lines = metrics(branch.metrics_path)
    # the decay starts where the checkpoint is (1024 tokens) and lasts the manifest's 1024 decay tokens
    assert branch.steps == 8 and [line["phase"] for line in lines] == ["anneal"] * 4
    assert lines[0]["lr"] < metrics(early.metrics_path)[-1]["lr"]
    with pytest.raises(ValueError, match="anneal phase"):
        train(corpus.anneal, out_dir=tmp_path / "again", anneal_from=branch.checkpoint_path, **FAST)
