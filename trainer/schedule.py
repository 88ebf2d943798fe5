"""Warmup-Stable-Decay learning rate as a function of tokens seen: linear warmup, a constant stable
stage, then a decay (linear, exponential or 1-sqrt) to min_ratio * peak that starts exactly at
decay_start_tokens, where the anneal phase of the mixture begins."""

from __future__ import annotations

import math
from dataclasses import dataclass

DECAY_SHAPES = ("linear", "exponential", "sqrt")


@dataclass(frozen=True)
class WSDSchedule:
    peak_lr: float
    warmup_tokens: int
    decay_start_tokens: int
    decay_tokens: int
    decay_shape: str = "linear"
    min_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.decay_shape not in DECAY_SHAPES:
            raise ValueError(f"decay_shape must be one of {DECAY_SHAPES}, not {self.decay_shape!r}")
        if not 0.0 <= self.min_ratio <= 1.0:
            raise ValueError(f"min_ratio must lie in [0, 1], not {self.min_ratio}")
        if self.decay_shape == "exponential" and self.min_ratio <= 0.0:
            raise ValueError("an exponential decay needs min_ratio > 0 (it never reaches zero)")
        if self.warmup_tokens > self.decay_start_tokens:
            raise ValueError(f"warmup ({self.warmup_tokens} tokens) ends after the decay starts "
                             f"({self.decay_start_tokens} tokens)")

    @classmethod
    def from_manifest(cls, lr_schedule: dict, peak_lr: float, min_ratio: float = 0.0) -> WSDSchedule:
        """From a manifest's `lr_schedule` block; the manifest fixes the token boundaries, not the lr."""
        return cls(
            peak_lr=peak_lr,
            warmup_tokens=lr_schedule["warmup_tokens"],
            decay_start_tokens=lr_schedule["decay_start_tokens"],
            decay_tokens=lr_schedule["decay_tokens"],
            decay_shape=lr_schedule["decay_shape"],
            min_ratio=min_ratio,
        )

    @property
    def end_tokens(self) -> int:
        return self.decay_start_tokens + self.decay_tokens

    def factor(self, tokens: int) -> float:
        """Multiplier of peak_lr for the update that brings the count of tokens seen to `tokens`.

        Warmup rises linearly to 1 at warmup_tokens; 1 up to and including decay_start_tokens; past it,
        the decay progress p = (tokens - decay_start) / decay_tokens drives the shape down to min_ratio.
        """
        if tokens < self.warmup_tokens:
            return max(tokens, 0) / self.warmup_tokens
        if tokens <= self.decay_start_tokens:
            return 1.0
        if self.decay_tokens <= 0:
            return self.min_ratio
        progress = min((tokens - self.decay_start_tokens) / self.decay_tokens, 1.0)
        floor = self.min_ratio
        if self.decay_shape == "linear":
            return 1.0 - (1.0 - floor) * progress
        if self.decay_shape == "sqrt":  # "1 - sqrt" cooldown, Hägele et al. 2024
            return 1.0 - (1.0 - floor) * math.sqrt(progress)
        return floor**progress  # exponential: geometric from 1 to min_ratio

    def __call__(self, tokens: int) -> float:
        return self.peak_lr * self.factor(tokens)
