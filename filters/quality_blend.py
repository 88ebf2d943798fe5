"""A quality scorer trained on your labels, blended with the built-in default model: the sigmoid of the mean of their
logits, so a document ranks high only when the classifier of your data and a model of other, openly licensed data
agree (what ensembles of classifiers buy Nemotron-CC), and one score never depends on the batch it came in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.special import expit, logit

from datafactory.filters.quality import Scorer

CLIP = 1e-4  # probabilities are clipped to [CLIP, 1 - CLIP]: a saturated fastText score must not outvote the other
OWN, PRIOR = "fasttext", "default"  # the two inputs, as the `quality` view names them


def blend(own: Sequence[float], prior: Sequence[float]) -> list[float]:
    """sigmoid(mean(logit(own), logit(prior))), each probability clipped first."""
    both = np.clip(np.array([own, prior], dtype=np.float64), CLIP, 1 - CLIP)
    return expit(logit(both).mean(axis=0)).tolist()


class BlendedScorer:
    """`own` (a fastText classifier trained on the user's labels) blended with `prior` (the built-in default model)."""

    def __init__(self, own: Scorer, prior: Scorer) -> None:
        self.own, self.prior = own, prior

    def score(self, texts: list[str]) -> list[float]:
        return blend(self.own.score(texts), self.prior.score(texts))

    def score_with_signals(self, texts: list[str], signals: Sequence[Mapping[str, float] | Sequence[tuple[str, float]]]
                           ) -> tuple[list[float], dict[str, list[float]]]:
        """The blended scores and both inputs; the prior (a combiner) reads the stored signals instead of measuring
        them again."""
        own = self.own.score(texts)
        prior = self.prior.score_with_signals(texts, signals)[0]
        return blend(own, prior), {OWN: own, PRIOR: prior}
