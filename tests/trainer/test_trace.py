"""Training traces: every step kept with spikes called on a robust statistic, each sampled row's document segments
with their loss and where they sit in the shards, and a resumed run rewriting what came after its checkpoint."""

from collections import deque

import pyarrow.parquet as pq
import pytest

from datafactory.trainer.checkpoints import latest_checkpoint
from datafactory.trainer.trace import TRACE_DIR, TraceSettings, is_spike
from datafactory.trainer.train import train

FAST = {"model": "test", "batch_size": 8, "compile": False, "device": "cpu", "log_every": 4}


def test_spikes_are_called_against_the_median_and_its_spread():
    settings = TraceSettings(min_history=10, k=6.0)
    history = deque([2.0 + 0.01 * (i % 5) for i in range(30)], maxlen=100)
    assert is_spike(2.5, history, settings) and not is_spike(2.05, history, settings)
    assert not is_spike(9.0, deque([2.0] * 5), settings)  # too little history to judge
    assert is_spike(float("nan"), history, settings)


def read_trace(run, kind):
    return pq.read_table(sorted((run / TRACE_DIR).glob(f"{kind}-*.parquet"))).to_pylist()


def test_every_step_and_the_sampled_segments_are_recorded(corpus, tmp_path):
    run = tmp_path / "run"
    result = train(corpus.stable, out_dir=run, max_steps=10, checkpoint_every=0, **FAST)
    steps = read_trace(run, "steps")
    assert [row["step"] for row in steps] == list(range(1, 11))
    assert [round(row["loss"], 5) for row in steps] == [round(loss, 5) for loss in result.losses]
    segments = read_trace(run, "segments")
    by_step = {}
    for segment in segments:
        by_step.setdefault(segment["step"], []).append(segment)
    assert sorted(by_step) == list(range(1, 11))
    for step in steps:  # a batch of 8 rows is sampled whole: its segments make up the step's loss
        found = by_step[step["step"]]
        tokens = sum(segment["tokens"] for segment in found)
        mean = sum(segment["loss"] * segment["tokens"] for segment in found) / tokens
        assert mean == pytest.approx(step["loss"], rel=1e-4)
    width = 33  # seq_len 32 + 1
    assert all(segment["position"] == segment["row"] * width + segment["start"] for segment in segments)
    assert all(segment["shard"].startswith("shards/") for segment in segments)


def test_a_resumed_run_rewrites_the_trace_after_its_checkpoint(corpus, tmp_path):
    run = tmp_path / "run"
    train(corpus.stable, out_dir=run, max_steps=10, checkpoint_every=6, **FAST)
    latest_checkpoint(run).unlink()  # killed after step 10's trace was written, before its checkpoint
    train(corpus.stable, out_dir=run, max_steps=12, checkpoint_every=6, **FAST)
    steps = [row["step"] for row in read_trace(run, "steps")]
    assert steps == list(range(1, 13))
    assert sorted({row["step"] for row in read_trace(run, "segments")}) == list(range(1, 13))
