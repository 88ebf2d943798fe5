"""A wind-tunnel grid with planted truth: losses over width x tokens x learning rate x batch size whose optimal
learning rate is width-free (μP) and falls with tokens, whose optimal batch grows with tokens, and decay-branch curves
that follow one planted loss-curve law."""

import math

import numpy as np

from datafactory.trainer.loss_curve import LossCurveLaw, wsd_lrs
from datafactory.trainer.windtunnel import ProxyResult
from datafactory.trainer.windtunnel_report import Curve

WIDTHS, TOKENS = (64, 128, 256, 512), (100_000, 200_000, 400_000)  # three budgets: the loss law needs them
LRS = tuple(0.002 * 2 ** (i / 2) for i in range(10))  # half-octave grid, 0.002 .. 0.045
BATCHES = (8, 16, 32)


def optimum_lr(tokens: int) -> float:
    return 0.01 * (tokens / 100_000) ** -0.2  # planted: width-free (μP), falling with tokens


def optimum_batch(tokens: int) -> float:
    return 16 * (tokens / 100_000) ** 0.5


def grid(seed: int = 0) -> list[ProxyResult]:
    rng = np.random.default_rng(seed)
    results = []
    for width in WIDTHS:
        for tokens in TOKENS:
            floor = 2.0 + 40 / width ** 0.5 + 300 / tokens ** 0.3
            for lr in LRS:
                for batch in BATCHES:
                    misfit = math.log(lr / optimum_lr(tokens)) ** 2 + 0.3 * math.log(batch / optimum_batch(tokens)) ** 2
                    results.append(ProxyResult(width, tokens, lr, batch, floor * (1 + 0.02 * misfit)
                                               * (1 + rng.normal(0, 0.001))))
    return results


SEQ_LEN, DECAY, WARMUP = 32, 0.2, 0.01
TRUE_CURVE = LossCurveLaw(l0=2.5, a=3.0, alpha=0.4, c=0.5)
DECAY_FRACTIONS = [0.05, 0.1, 0.2, 0.3, 0.5]


def curves(seed: int = 0) -> list[Curve]:
    """Every setting's branches follow one planted curve law (plus 0.2% noise per step); the trunk's warmup is the
    largest budget's."""
    rng = np.random.default_rng(seed)
    found = []
    for width in WIDTHS:
        for lr in LRS:
            for batch in BATCHES:
                largest = max(TOKENS) // (batch * SEQ_LEN)
                for tokens in TOKENS:
                    steps = tokens // (batch * SEQ_LEN)
                    decay = round(DECAY * steps)
                    lrs = wsd_lrs(steps, round(WARMUP * largest), decay, peak_lr=0.01)
                    losses = TRUE_CURVE.predict(lrs) * (1 + rng.normal(0, 0.002, steps))
                    found.append(Curve(width, lr, batch, tokens, steps - decay, lrs, losses))
    return found
