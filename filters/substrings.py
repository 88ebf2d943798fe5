"""Repeated spans inside documents (exact-substring dedup, Lee et al. 2022): tokens, 128-bit rolling hashes of token
windows, the winnowed fingerprints that find candidate regions, and the spans a document loses to earlier copies.

A token is a whitespace-separated word, or one character of a no-space script (a Han character counts as one). A
window is `k` consecutive tokens; its hash covers the exact characters from its first token's start to its last
token's end, so equal hashes mean equal text (up to a 2^-128 collision), never a match up to whitespace.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from datafactory.filters.text import NO_SPACE_RANGES

WORD, SPACE, NO_SPACE = 0, 1, 2
_TOP = NO_SPACE_RANGES[-1][1] + 1  # code points from here on are word characters: one table lookup per character


@cache
def _kinds() -> np.ndarray:
    kinds = np.zeros(_TOP + 1, dtype=np.uint8)
    for low, high in NO_SPACE_RANGES:
        kinds[low : high + 1] = NO_SPACE
    kinds[[code for code in range(0x3001) if chr(code).isspace()]] = SPACE
    return kinds


def code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def token_bounds(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends): each token's character offsets, in order."""
    kind = _kinds()[np.minimum(points, _TOP)]
    solid = kind != SPACE
    before = np.concatenate(([SPACE], kind[:-1]))
    after = np.concatenate((kind[1:], [SPACE]))
    starts = np.flatnonzero(solid & ((kind == NO_SPACE) | (before != WORD)))
    ends = np.flatnonzero(solid & ((kind == NO_SPACE) | (after != WORD))) + 1
    return starts, ends


# Two polynomial hashes modulo 2^64 (numpy's uint64 arithmetic wraps), with odd bases so each has an inverse: the hash
# of characters [a, b) is (S[b] - S[a]) * base^-a, from one prefix sum S per document. Natural text cannot collide
# them; crafted strings (Thue-Morse) can, which at worst removes a span that was not repeated.
_BASES = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F)
_MIX = (0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53)


@cache
def _powers(base: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    inverse = pow(base, -1, 2**64)
    with np.errstate(over="ignore"):
        up = np.cumprod(np.full(length, base, dtype=np.uint64))
        down = np.cumprod(np.full(length, inverse, dtype=np.uint64))
    return np.concatenate(([np.uint64(1)], up[:-1])), np.concatenate(([np.uint64(1)], down[:-1]))


def _powers_for(base: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    size = 1 << max(12, (length - 1).bit_length())  # powers of two: a handful of cached tables serve every length
    up, down = _powers(base, size)
    return up[:length], down[:length]


@dataclass(frozen=True)
class Hashed:
    """One document's tokens and the prefix sums its window hashes are read from."""

    starts: np.ndarray
    ends: np.ndarray
    prefixes: tuple[np.ndarray, np.ndarray]
    inverses: tuple[np.ndarray, np.ndarray]

    @classmethod
    def of(cls, text: str) -> Hashed:
        points = code_points(text)
        starts, ends = token_bounds(points)
        prefixes, inverses = [], []
        with np.errstate(over="ignore"):
            for base, mix in zip(_BASES, _MIX, strict=True):
                up, down = _powers_for(base, len(points) + 1)
                values = (points.astype(np.uint64) + np.uint64(1)) * np.uint64(mix)
                prefixes.append(np.concatenate(([np.uint64(0)], np.cumsum(values * up[: len(points)]))))
                inverses.append(down)
        return cls(starts, ends, tuple(prefixes), tuple(inverses))

    @property
    def tokens(self) -> int:
        return len(self.starts)

    def windows(self, k: int, first: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The two 64-bit hashes of the k-token windows starting at token positions ``first`` (default: all)."""
        if first is None:
            first = np.arange(max(0, self.tokens - k + 1))
        begin, end = self.starts[first], self.ends[first + k - 1]
        with np.errstate(over="ignore"):
            return tuple((prefix[end] - prefix[begin]) * inverse[begin]
                         for prefix, inverse in zip(self.prefixes, self.inverses, strict=True))


def keys(high: np.ndarray, low: np.ndarray) -> list[int]:
    """128-bit window keys as Python ints (what the shuffle groups by)."""
    return [h << 64 | lo for h, lo in zip(high.tolist(), low.tolist(), strict=True)]


@dataclass(frozen=True)
class Winnowing:
    """Fingerprints of `gram`-token windows, the rightmost minimum of every `window` consecutive hashes (Schleimer et
    al. 2003): two documents sharing a span of gram + window - 1 = min_tokens tokens share a fingerprint, at about
    2 / (window + 1) of the token positions."""

    min_tokens: int

    @property
    def gram(self) -> int:
        return max(1, self.min_tokens // 2)

    @property
    def window(self) -> int:
        return self.min_tokens - self.gram + 1

    def fingerprints(self, text: str) -> list[tuple[int, int]]:
        """(key, token position) of each fingerprint; none for a document shorter than min_tokens tokens."""
        hashed = Hashed.of(text)
        if hashed.tokens < self.min_tokens:
            return []
        high, low = hashed.windows(self.gram)
        reversed_windows = sliding_window_view(high, self.window)[:, ::-1]
        chosen = np.unique(np.arange(len(reversed_windows)) + self.window - 1 - reversed_windows.argmin(axis=1))
        return list(zip(keys(high[chosen], low[chosen]), chosen.tolist(), strict=True))

    def regions(self, shared: list[int], tokens: int) -> list[tuple[int, int]]:
        """Token ranges that hold every repeated span of min_tokens or more through the shared fingerprints at these
        positions: inside such a span a fingerprint falls every `window` tokens, the first within `window - 1` of its
        start, so widening each by window - 1 on both sides covers the span."""
        reach = self.window - 1
        merged: list[tuple[int, int]] = []
        for position in sorted(shared):
            begin, end = max(0, position - reach), min(tokens, position + self.gram + reach)
            if merged and begin <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((begin, end))
        return merged

    def region_windows(self, text: str, shared: list[int]) -> list[tuple[int, int, int]]:
        """(key, token position, character offset) of every min_tokens window inside the candidate regions."""
        hashed = Hashed.of(text)
        ranges = [np.arange(begin, end - self.min_tokens + 1) for begin, end in self.regions(shared, hashed.tokens)]
        first = np.unique(np.concatenate(ranges)) if ranges else np.array([], dtype=np.int64)
        high, low = hashed.windows(self.min_tokens, first)
        return list(zip(keys(high, low), first.tolist(), hashed.starts[first].tolist(), strict=True))


@dataclass(frozen=True)
class Claim:
    """A window of this document that an earlier-ranked document also holds (and keeps)."""

    position: int  # first token of the window
    kept_in: str
    kept_start: int  # character offset of the window in kept_in


@dataclass(frozen=True)
class Span:
    start: int  # character offsets in the document's text
    end: int
    tokens: int
    kept_in: str  # the document whose copy stays (of the span's first window)
    kept_start: int


@dataclass(frozen=True)
class Removal:
    text: str
    spans: list[Span]
    tokens_left: int


def remove_claimed(text: str, claims: list[Claim], min_tokens: int, merge_gap: int) -> Removal:
    """The text without its claimed windows, unioned into spans; spans at most ``merge_gap`` tokens apart are merged
    (the gap goes too: a product name inside a template, a date inside a disclaimer)."""
    hashed = Hashed.of(text)
    spans: list[tuple[int, int, Claim]] = []  # token ranges [first, last) and the claim that opened each
    for claim in sorted(claims, key=lambda claim: claim.position):
        end = claim.position + min_tokens
        if spans and claim.position <= spans[-1][1] + merge_gap:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end), spans[-1][2])
        else:
            spans.append((claim.position, end, claim))
    pieces, cursor, removed = [], 0, []
    for first, last, claim in spans:
        start, end = int(hashed.starts[first]), int(hashed.ends[last - 1])
        pieces.append(text[cursor:start])
        cursor = end
        removed.append(Span(start, end, last - first, claim.kept_in, claim.kept_start))
    pieces.append(text[cursor:])
    return Removal("".join(pieces), removed, hashed.tokens - sum(span.tokens for span in removed))
