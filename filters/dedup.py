"""Exact-duplicate keys and MinHash signatures / LSH band keys for near-duplicate detection.

Signatures equal datasketch's ``MinHash(scheme="affine64", hashfunc=hash_shingle).update_batch``, computed
for a whole batch at once with numpy.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import numpy as np
import xxhash
from datasketch import MinHash
from datasketch.lsh import _optimal_param

from factory.config import DedupConfig
from filters.text import is_cjk_dominant, normalize_for_hash, single_line, words

SCHEME = "affine64"  # 64-bit hash values: no saturation on large sets, stored as uint64
EMPTY = np.uint64(np.iinfo(np.uint64).max)  # signature value of a document without shingles
_BLOCK_CELLS = 1 << 17  # shingles x permutations per block: 1 MiB of uint64 stays in cache
_FMIX1 = np.uint64(0xFF51AFD7ED558CCD)
_FMIX2 = np.uint64(0xC4CEB9FE1A85EC53)
_SHIFT = np.uint64(33)


def exact_key(text: str) -> str:
    """Hex xxh3-128 of ``normalize_for_hash(text)``: equal for case, whitespace, punctuation variants."""
    return xxhash.xxh3_128_hexdigest(normalize_for_hash(text).encode("utf-8"))


def shingles(text: str, ngram: int, cjk_ngram: int) -> list[bytes]:
    """Distinct token n-grams (n = cjk_ngram for CJK-dominant text), UTF-8, first-seen order.

    Texts with fewer than n tokens give one shingle of all their tokens; texts without word characters
    give their whitespace-collapsed text, and empty texts give none.
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    tokens = words(folded)
    if not tokens:
        flat = single_line(folded)
        return [flat.encode("utf-8")] if flat else []
    n = cjk_ngram if is_cjk_dominant(folded, tokens) else ngram
    if len(tokens) <= n:
        return [" ".join(tokens).encode("utf-8")]
    grams = dict.fromkeys(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return [gram.encode("utf-8") for gram in grams]


def hash_shingle(shingle: bytes) -> int:
    """64-bit hash of one shingle (the ``hashfunc`` datasketch must be given to reproduce signatures)."""
    return xxhash.xxh64_intdigest(shingle)


def _fmix64(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer, as datasketch applies it before its affine permutations."""
    values = values ^ (values >> _SHIFT)
    values = values * _FMIX1
    values = values ^ (values >> _SHIFT)
    values = values * _FMIX2
    return values ^ (values >> _SHIFT)


@lru_cache(maxsize=64)
def _lsh_params(threshold: float, num_perm: int, fp_weight: float, fn_weight: float) -> tuple[int, int]:
    return _optimal_param(threshold, num_perm, fp_weight, fn_weight)


def lsh_params(config: DedupConfig) -> tuple[int, int]:
    """(bands, rows) minimising datasketch's weighted false-positive + false-negative probability."""
    return _lsh_params(
        config.threshold, config.num_perm, config.false_positive_weight, config.false_negative_weight
    )


def band_keys(signature: np.ndarray, bands: int, rows: int) -> list[str]:
    """One key per band, f"{band}:{xxh64 of the band's values}"; equal keys = candidate duplicates.

    An EMPTY signature (text without shingles) gets no keys: it is never a near-duplicate candidate.
    """
    if bands * rows > len(signature):
        raise ValueError(f"{bands} bands x {rows} rows need {bands * rows} values, got {len(signature)}")
    values = np.ascontiguousarray(signature, dtype="<u8")
    if bool(np.all(values == EMPTY)):
        return []
    return [
        f"{band}:{xxhash.xxh64_hexdigest(values[band * rows : (band + 1) * rows].tobytes())}"
        for band in range(bands)
    ]


def jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """Estimated Jaccard similarity: share of positions where the two signatures agree."""
    if sig_a.shape != sig_b.shape:
        raise ValueError(f"signatures differ in shape: {sig_a.shape} vs {sig_b.shape}")
    return float(np.count_nonzero(sig_a == sig_b)) / len(sig_a)


class MinHasher:
    """MinHash signatures for batches of texts, with datasketch's permutations for (num_perm, seed)."""

    band_keys = staticmethod(band_keys)
    jaccard = staticmethod(jaccard)

    def __init__(self, config: DedupConfig) -> None:
        self.config = config
        template = MinHash(num_perm=config.num_perm, seed=config.seed, scheme=SCHEME, hashfunc=hash_shingle)
        a, b = template.permutations
        self._a = np.asarray(a, dtype=np.uint64)
        self._b = np.asarray(b, dtype=np.uint64)

    @property
    def num_perm(self) -> int:
        return self.config.num_perm

    def datasketch_minhash(self) -> MinHash:
        """An empty datasketch MinHash built like this hasher's signatures (for interop and checks)."""
        return MinHash(num_perm=self.num_perm, seed=self.config.seed, scheme=SCHEME, hashfunc=hash_shingle)

    def shingles(self, text: str) -> list[bytes]:
        return shingles(text, self.config.ngram, self.config.cjk_ngram)

    def signatures(self, texts: list[str]) -> np.ndarray:
        """uint64 array of shape (len(texts), num_perm); rows of texts without shingles are all EMPTY."""
        return self.signatures_from_shingles([self.shingles(text) for text in texts])

    def signatures_from_shingles(self, shingle_lists: list[list[bytes]]) -> np.ndarray:
        counts = np.array([len(items) for items in shingle_lists], dtype=np.int64)
        total = int(counts.sum())
        hashes = np.fromiter(
            (hash_shingle(item) for items in shingle_lists for item in items), dtype=np.uint64, count=total
        )
        owners = np.repeat(np.arange(len(shingle_lists)), counts)
        out = np.full((len(shingle_lists), self.num_perm), EMPTY, dtype=np.uint64)
        self._min_into(out, _fmix64(hashes), owners)
        return out

    def _min_into(self, out: np.ndarray, mixed: np.ndarray, owners: np.ndarray) -> None:
        """out[doc] = min over the doc's shingles of a * h + b (mod 2^64), a cache-sized block at a time."""
        step = max(1, _BLOCK_CELLS // self.num_perm)
        block = np.empty((min(step, len(mixed)), self.num_perm), dtype=np.uint64)
        for start in range(0, len(mixed), step):
            hashes = mixed[start : start + step]
            values = block[: len(hashes)]
            np.multiply(hashes[:, None], self._a, out=values)
            np.add(values, self._b, out=values)
            own = owners[start : start + step]
            firsts = np.flatnonzero(np.r_[True, own[1:] != own[:-1]])
            docs = own[firsts]
            out[docs] = np.minimum(out[docs], np.minimum.reduceat(values, firsts, axis=0))
