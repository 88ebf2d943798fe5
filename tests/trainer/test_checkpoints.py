"""Checkpoints: atomic saves, latest-checkpoint lookup that ignores half-written files, pruning that keeps the
stable-end link, and runs that start from a checkpoint (kill + resume, branching a decay) on the same trajectory."""

import dataclasses
import os

import pytest
import torch
from support.synthetic import read_metrics

from datafactory.trainer.checkpoints import (
    checkpoint_steps,
    find_start,
    latest_checkpoint,
    link_or_copy,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    stable_end_path,
    step_path,
)
from datafactory.trainer.model import load_model_config
from datafactory.trainer.train import train

FAST = {"model": "test", "batch_size": 8, "compile": False, "device": "cpu", "log_every": 1}
CPU = torch.device("cpu")


def test_latest_checkpoint_ignores_temp_files_and_pruning_keeps_the_stable_end(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    for step in (3, 6, 12, 9):
        save_checkpoint(step_path(tmp_path, step), {"step": step, "weights": torch.arange(step)})
    (tmp_path / "checkpoints" / ".step-00000015.pt.tmp-999").write_bytes(b"half a checkpoint")
    assert [step for step, _ in checkpoint_steps(tmp_path)] == [3, 6, 9, 12]
    assert latest_checkpoint(tmp_path) == step_path(tmp_path, 12)
    assert load_checkpoint(latest_checkpoint(tmp_path), CPU)["weights"].tolist() == list(range(12))

    link_or_copy(step_path(tmp_path, 3), stable_end_path(tmp_path))
    prune_checkpoints(tmp_path, keep=2)
    assert [step for step, _ in checkpoint_steps(tmp_path)] == [9, 12]
    assert load_checkpoint(stable_end_path(tmp_path), CPU)["step"] == 3
    prune_checkpoints(tmp_path, keep=0)  # keeps them all
    assert len(checkpoint_steps(tmp_path)) == 2


def test_link_or_copy_copies_where_links_fail(tmp_path, monkeypatch):
    source = save_checkpoint(step_path(tmp_path, 1), {"step": 1})

    def no_links(*args):
        raise OSError("no hard links here")

    monkeypatch.setattr(os, "link", no_links)
    link_or_copy(source, stable_end_path(tmp_path))
    assert stable_end_path(tmp_path).read_bytes() == source.read_bytes()
    assert os.stat(source).st_nlink == 1


def test_a_fresh_out_dir_starts_from_scratch_and_another_model_is_refused(corpus, tmp_path):
    schedule = {"decay_start_tokens": 2048, "total_tokens": 3072}
    config = load_model_config("test", vocab_size=64, seq_len=32)
    start = find_start(tmp_path / "run", None, schedule, config, 8, CPU)
    assert (start.kind, start.checkpoint, start.decay_start_tokens, start.total_tokens) == ("scratch", None, 2048, 3072)

    early = train(corpus.stable, out_dir=tmp_path / "early", max_steps=2, checkpoint_every=0, **FAST)
    other = dataclasses.replace(config, n_layers=config.n_layers + 1)
    with pytest.raises(ValueError, match="another model"):
        find_start(tmp_path / "branch", early.checkpoint_path, schedule, other, 8, CPU)


def test_kill_and_resume_continue_the_same_trajectory(corpus, tmp_path):
    reference = train(corpus.stable, out_dir=tmp_path / "reference", checkpoint_every=0, **FAST)
    assert reference.steps == 12  # 3072 tokens / (8 x 32)

    def crash(info):
        if info["step"] == 7:
            raise KeyboardInterrupt("killed")

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(corpus.stable, out_dir=run, checkpoint_every=3, on_step=crash, **FAST)
    assert load_checkpoint(latest_checkpoint(run), CPU)["step"] == 6
    (run / "checkpoints" / ".step-00000009.pt.tmp-999").write_bytes(b"half a checkpoint")
    resumed = train(corpus.stable, out_dir=run, checkpoint_every=3, **FAST)
    assert resumed.start_step == 6 and resumed.steps == 12
    assert resumed.losses == pytest.approx(reference.losses[6:], abs=1e-6)
    assert [line["step"] for line in read_metrics(resumed.metrics_path)] == list(range(1, 13))
    with pytest.raises(ValueError, match="batch_size"):
        train(corpus.stable, out_dir=run, **{**FAST, "batch_size": 4})


def test_branch_from_an_earlier_stable_checkpoint(corpus, tmp_path):
    early = train(corpus.stable, out_dir=tmp_path / "early", max_steps=4, checkpoint_every=0, **FAST)
    branch = train(corpus.stable, out_dir=tmp_path / "branch", anneal_from=early.checkpoint_path,
                   checkpoint_every=0, **FAST)
    lines = read_metrics(branch.metrics_path)
    # the decay starts where the checkpoint is (1024 tokens) and lasts the manifest's 1024 decay tokens
    assert branch.steps == 8 and [line["phase"] for line in lines] == ["anneal"] * 4
    assert lines[0]["lr"] < read_metrics(early.metrics_path)[-1]["lr"]
    with pytest.raises(ValueError, match="anneal phase"):
        train(corpus.anneal, out_dir=tmp_path / "again", anneal_from=branch.checkpoint_path, **FAST)
