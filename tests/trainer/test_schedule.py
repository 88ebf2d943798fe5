"""WSD schedule: warmup, stable plateau, and a decay that starts exactly at decay_start_tokens."""

import math

import pytest

from datafactory.trainer.schedule import WSDSchedule


def make(shape: str, min_ratio: float = 0.1) -> WSDSchedule:
    return WSDSchedule(peak_lr=1.0, warmup_tokens=100, decay_start_tokens=1000, decay_tokens=400,
                       decay_shape=shape, min_ratio=min_ratio)


@pytest.mark.parametrize("shape", ["linear", "exponential", "sqrt"])
def test_warmup_and_stable_are_shape_independent(shape):
    schedule = make(shape)
    assert schedule(0) == 0.0
    assert schedule(50) == pytest.approx(0.5)
    assert schedule(100) == 1.0
    assert schedule(500) == 1.0
    assert schedule(1000) == 1.0  # the last stable update still runs at the peak
    assert schedule(1001) < 1.0  # the first token past decay_start decays
    assert schedule(1400) == pytest.approx(0.1)
    assert schedule(5000) == pytest.approx(0.1)  # past the end: stays at the floor


def test_decay_shapes_midway():
    assert make("linear")(1200) == pytest.approx(1 - 0.9 * 0.5)
    assert make("sqrt")(1200) == pytest.approx(1 - 0.9 * math.sqrt(0.5))
    assert make("exponential")(1200) == pytest.approx(0.1**0.5)
    assert make("linear", min_ratio=0.0)(1400) == 0.0


def test_from_manifest_and_validation():
    spec = {"total_tokens": 1400, "warmup_tokens": 100, "decay_start_tokens": 1000, "decay_tokens": 400,
            "decay_shape": "sqrt"}
    schedule = WSDSchedule.from_manifest(spec, peak_lr=3e-4, min_ratio=0.0)
    assert schedule.end_tokens == 1400 and schedule(1000) == 3e-4 and schedule(1400) == 0.0
    with pytest.raises(ValueError, match="exponential"):
        make("exponential", min_ratio=0.0)
    with pytest.raises(ValueError, match="warmup"):
        WSDSchedule(peak_lr=1.0, warmup_tokens=2000, decay_start_tokens=1000, decay_tokens=10)
    with pytest.raises(ValueError, match="decay_shape"):
        make("cosine")
