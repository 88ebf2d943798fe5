"""Training metrics: one JSONL line per flush with loss per source, tokens/s that leaves the compiling first step
out, MFU against a given or known peak, and a resumed log that drops lines written past the checkpoint."""

import json

import pytest
import torch
from support.synthetic import read_metrics

from datafactory.trainer.metrics import Metrics, peak_flops_for
from datafactory.trainer.train import train

FAST = {"model": "test", "batch_size": 8, "compile": False, "device": "cpu", "log_every": 1}


def record_step(log: Metrics, loss: float, source_sum: list[float], source_count: list[float]) -> None:
    log.record(torch.tensor(loss), torch.tensor(1.0), torch.tensor(source_sum), torch.tensor(source_count),
               tokens=256, data_wait=0.0)


def test_flush_writes_one_line_per_interval(tmp_path, capsys):
    log = Metrics(tmp_path / "run" / "metrics.jsonl", ["web", "code"], flops_per_token=1e6, peak_flops=1e12,
                  total_steps=4, resume_step=None)
    assert log.flush(0, "stable", 1e-3, 0) is None  # nothing recorded yet
    assert log.tokens_per_s == 0.0 and log.mfu is None

    record_step(log, 4.0, [8.0, 0.0], [2.0, 0.0])
    first = log.flush(1, "stable", 1e-3, 256, timed=False)
    assert log.tokens_per_s == pytest.approx(first["tokens_per_s"])  # only the untimed interval so far
    record_step(log, 3.0, [6.0, 3.0], [2.0, 1.0])
    record_step(log, 2.0, [4.0, 1.0], [2.0, 1.0])
    second = log.flush(3, "stable", 1e-3, 768)
    assert second["loss"] == 2.5 and second["loss_per_source"] == {"web": 2.5, "code": 2.0}
    assert first["loss_per_source"] == {"web": 4.0}  # a source with no tokens in the interval is left out
    assert second["mfu"] == pytest.approx(1e6 * second["tokens_per_s"] / 1e12)
    assert log.tokens_per_s == pytest.approx(second["tokens_per_s"])  # the untimed first step is left out
    assert log.losses == [4.0, 3.0, 2.0]
    assert read_metrics(log.path) == [first, second]
    assert "step      3/4 | stable | loss 2.5000" in capsys.readouterr().out


def test_a_resumed_log_drops_lines_past_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": step}) + "\n" for step in range(1, 8)))
    Metrics(path, ["web"], 1e6, None, total_steps=10, resume_step=6)
    assert [line["step"] for line in read_metrics(path)] == list(range(1, 7))
    Metrics(path, ["web"], 1e6, None, total_steps=10, resume_step=None)
    assert path.read_text() == ""


def test_no_peak_flops_on_cpu():
    assert peak_flops_for(torch.device("cpu")) is None


def test_mfu_with_a_given_peak(corpus, tmp_path):
    result = train(corpus.stable, out_dir=tmp_path / "run", max_steps=3, checkpoint_every=0,
                   peak_flops=1e12, **FAST)
    assert result.mfu is not None and 0 < result.mfu < 1
    assert all(line["mfu"] is not None for line in read_metrics(result.metrics_path))
