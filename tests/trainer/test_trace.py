"""Training traces: every step kept with spikes called on a robust statistic, each sampled row's document segments
with their loss and where they sit in the shards, and a resumed run rewriting what came after its checkpoint."""

from collections import deque

import pyarrow.parquet as pq
import pytest

from datafactory.trainer.checkpoints import latest_checkpoint
from datafactory.trainer.trace import TRACE_DIR, TraceSettings, spike_limit
from datafactory.trainer.train import train

FAST = {"model": "test", "batch_size": 8, "compile": False, "device": "cpu", "log_every": 4}


def test_spikes_are_called_against_the_median_and_its_spread():
    settings = TraceSettings(min_history=10, k=6.0)
    limit = spike_limit(deque([2.0 + 0.01 * (i % 5) for i in range(30)], maxlen=100), settings)
    assert 2.05 < limit < 2.5
    assert spike_limit(deque([2.0] * 5), settings) == float("inf")  # too little history to judge
    assert spike_limit(deque([2.0] * 30), settings) == pytest.approx(2.0 + 6 * 0.002)  # flat: 0.1% of the median


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


def test_a_spike_step_keeps_every_row_and_stays_out_of_the_statistic(tmp_path):
    import torch

    from datafactory.trainer.trace import Tracer

    tracer = Tracer(tmp_path, TraceSettings(rows_per_step=1, min_history=10, flush_steps=1000), 9, None)
    stats = torch.zeros(3, 3, 8)  # (loss sum, tokens, start) x 3 rows x 8 segment slots: one 8-token segment a row
    stats[0, :, 0], stats[1, :, 0] = 16.0, 8.0
    for step in range(1, 41):
        loss = 9.0 if step == 30 else 2.0 + 0.01 * (step % 3)
        tracer.record(step, "stable", step * 24, 1e-3, torch.tensor(loss), torch.tensor(1.0), stats,
                      [("shards/a.arrow", step * 3 + row) for row in range(3)])
    tracer.flush()
    assert not list(tmp_path.glob("*.parquet"))  # fewer than flush_steps gathered: nothing written yet
    tracer.flush(force=True)
    steps = pq.read_table(next(tmp_path.glob("steps-*.parquet"))).to_pylist()
    assert [row["step"] for row in steps if row["spike"]] == [30]
    rows = [row["row"] for row in pq.read_table(next(tmp_path.glob("segments-*.parquet"))).to_pylist()
            if row["step"] in (29, 30)]
    assert rows == [29 * 3, 30 * 3, 30 * 3 + 1, 30 * 3 + 2]  # one sampled row, all three in the spike step
