"""Dedup signals per document: exact keys, MinHash signatures (batch-vectorised), LSH band keys, line/paragraph keys.

Signatures equal datasketch's ``MinHash(scheme="affine32", hashfunc=hash_shingle).update_batch(shingles(text))``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np
import regex
import xxhash
from datasketch import LeanMinHash, MinHash
from datasketch.lsh import _optimal_param

from datafactory.factory.config import DedupConfig, ParagraphDedupConfig
from datafactory.filters.text import CJK_DOMINANT_RATIO, is_cjk, is_cjk_dominant, normalize_for_hash, single_line, words

try:  # optional: a compiled kernel for the shingles x permutations step, same results as the numpy one
    import numba
except ImportError:  # pragma: no cover - depends on the environment
    numba = None

# 32-bit permutations: twice the SIMD lanes of datasketch's affine64 and half the bytes per signature;
# 2^32 values keep chance agreement between signatures negligible below ~10^7 shingles per document.
SCHEME = "affine32"
EMPTY = np.uint32(np.iinfo(np.uint32).max)  # signature value of a document without shingles
_CHUNK_POINTS = 1 << 22  # code points hashed together: bounds the prefix-sum and power tables to 32 MiB each
_BLOCK_SHINGLES = 1 << 14  # shingles per numpy MinHash block: 8 MiB of uint32 at 128 permutations
_MASK = (1 << 64) - 1
_FMIX = (33, 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53)
# Polynomial hashing: a token's code points are weighted by powers of _BASE, the tokens of a shingle by _WEIGHTS.
_BASE = 0x9E3779B97F4A7C15
_WEIGHTS = (
    0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 0xD6E8FEB86659FD93, 0xA0761D6478BD642F, 0xE7037ED1A0B428DB,
    0x8EBC6AF09C88C6E3, 0x589965CC75374CC3, 0x1D8E4E27C47D124F, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
)
MAX_NGRAM = len(_WEIGHTS)
WORD, NO_SPACE, JOINER = 1, 2, 3  # token classes of a code point; 0 separates tokens
_JOINERS = "'’"  # join two word runs into one token ("don't"), as datafactory.filters.text.words does
_FOLD_CANDIDATES = regex.compile(r"[\p{CWCF}\p{NFKC_QC=N}]")
_WORD_RUNS = regex.compile(r"[\p{L}\p{M}\p{N}]+")
_PARAGRAPH_BREAK = regex.compile(r"\n[^\S\n]*\n\s*")
_EXCESS_BLANK_LINES = regex.compile(r"\n{3,}")

NORMALIZATIONS = {
    "none": lambda text: text,
    "whitespace": single_line,
    "standard": normalize_for_hash,
}

RANK_WIDTH = {"longest": 12, "earliest_date": 10, "oldest_id": 0}
_ISO_DATE = regex.compile(r"\d{4}-\d{2}-\d{2}")


def survivor_rank(row: dict, survivor: str) -> str:
    """Fixed-width prefix that sorts the preferred survivor first (of a cluster, or of a repeated span's copies):
    longest text, earliest date, or nothing (then the id decides)."""
    if survivor == "longest":
        return f"{10**12 - 1 - len(row['text']):012d}"
    if survivor == "earliest_date":
        date = (row.get("date") or "")[:10]
        return date if _ISO_DATE.fullmatch(date) else "9999-99-99"
    return ""


def exact_key(text: str, normalization: str = "standard") -> str:
    """Hex xxh3-128 of the normalised text; "standard" ignores case, whitespace, punctuation and digit values."""
    return xxhash.xxh3_128_hexdigest(NORMALIZATIONS[normalization](text).encode("utf-8"))


# --------------------------------------------------------------------------- shingles


@cache
def _tables() -> tuple[np.ndarray, np.ndarray]:
    """Per code point: its fold (NFKC + casefold where that is one code point) and the token class of the fold."""
    codes = np.arange(0x110000, dtype=np.uint32)
    everything = codes.tobytes().decode("utf-32-le", "surrogatepass")
    fold = codes.astype(np.uint64)
    for match in _FOLD_CANDIDATES.finditer(everything):
        folded = unicodedata.normalize("NFKC", match.group()).casefold()
        if len(folded) == 1:
            fold[match.start()] = ord(folded)
    base = np.zeros(len(codes), dtype=np.uint8)
    for match in _WORD_RUNS.finditer(everything):
        base[match.start() : match.end()] = WORD
        for offset in (i for i, ch in enumerate(match.group()) if is_cjk(ch)):
            base[match.start() + offset] = NO_SPACE
    for joiner in _JOINERS:
        base[ord(joiner)] = JOINER
    return fold, base[fold]


def fold_text(text: str) -> str:
    """The text as the shingler sees it: each code point replaced by its single-code-point NFKC casefold."""
    fold, _ = _tables()
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return fold[codes].astype(np.uint32).tobytes().decode("utf-32-le", "surrogatepass")


def shingles(text: str, ngram: int, cjk_ngram: int) -> list[bytes]:
    """Reference shingling (slow, for interop and tests): distinct token n-grams, tokens joined by spaces, UTF-8.

    Tokens are filters.text.words of the folded text; n is cjk_ngram for CJK-dominant text (character n-grams),
    else ngram (word n-grams). A text with fewer than n tokens is one shingle; a text without tokens has none.
    """
    folded = fold_text(text)
    tokens = words(folded)
    n = min(cjk_ngram if is_cjk_dominant(folded, tokens) else ngram, len(tokens))
    grams = dict.fromkeys(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)) if n else {}
    return [gram.encode("utf-8") for gram in grams]


def _fmix64_int(value: int) -> int:
    shift, mul1, mul2 = _FMIX
    value ^= value >> shift
    value = (value * mul1) & _MASK
    value ^= value >> shift
    value = (value * mul2) & _MASK
    return value ^ (value >> shift)


def _token_hash_int(token: str) -> int:
    return _fmix64_int(sum(ord(ch) * pow(_BASE, i, 1 << 64) for i, ch in enumerate(token)) & _MASK)


def hash_shingle(shingle: bytes) -> int:
    """32-bit hash of one shingle from ``shingles`` (the ``hashfunc`` that makes datasketch reproduce signatures).

    Each token is hashed to 64 bits, the tokens are combined with fixed odd weights, and the top 32 bits are kept.
    """
    tokens = shingle.decode("utf-8").split(" ")
    return (sum(_token_hash_int(token) * _WEIGHTS[i] for i, token in enumerate(tokens)) & _MASK) >> 32


def _fmix64(values: np.ndarray) -> np.ndarray:
    shift, mul1, mul2 = (np.uint64(value) for value in _FMIX)
    values = values ^ (values >> shift)
    values *= mul1
    values ^= values >> shift
    values *= mul2
    return values ^ (values >> shift)


def _fmix32(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer: datasketch's affine32 scheme applies it to every hash before permuting."""
    values = values ^ (values >> np.uint32(16))
    values *= np.uint32(0x85EBCA6B)
    values ^= values >> np.uint32(13)
    values *= np.uint32(0xC2B2AE35)
    return values ^ (values >> np.uint32(16))


_POWERS = (np.ones(0, dtype=np.uint64), np.ones(0, dtype=np.uint64))


def _power_table(base: int, size: int) -> np.ndarray:
    powers = np.full(size, base, dtype=np.uint64)
    powers[0] = 1
    return np.cumprod(powers, dtype=np.uint64)  # wraps modulo 2^64, like pow(_, _, 2^64)


def _powers(length: int) -> tuple[np.ndarray, np.ndarray]:
    """_BASE^i and _BASE^-i mod 2^64 for i < length, sliced from tables grown in powers of two."""
    global _POWERS
    powers = _POWERS  # replaced whole, never mutated: threads of one worker share it safely
    if len(powers[0]) < length:
        size = 1 << max(12, (length - 1).bit_length())
        powers = _POWERS = (_power_table(_BASE, size), _power_table(pow(_BASE, -1, 1 << 64), size))
    return powers[0][:length], powers[1][:length]


def _token_spans(classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end positions of tokens: runs of WORD code points, and every NO_SPACE code point alone."""
    joiners = np.flatnonzero(classes == JOINER)
    if len(joiners):
        inner = joiners[(joiners > 0) & (joiners < len(classes) - 1)]
        classes[joiners] = 0
        classes[inner[(classes[inner - 1] == WORD) & (classes[inner + 1] == WORD)]] = WORD
    word = classes == WORD
    single = classes == NO_SPACE
    starts = np.flatnonzero(single | (word & ~np.r_[False, word[:-1]]))
    ends = np.flatnonzero(single | (word & ~np.r_[word[1:], False])) + 1
    return starts, ends


def _token_hashes(codes: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The vectorised _token_hash_int: sum(code point * _BASE^i) over each token, from prefix sums over the text."""
    powers, inverses = _powers(len(codes))
    prefix = np.empty(len(codes) + 1, dtype=np.uint64)
    prefix[0] = 0
    np.cumsum(codes * powers, out=prefix[1:])
    return _fmix64((prefix[ends] - prefix[starts]) * inverses[starts])


def _shingle_hashes(tokens: np.ndarray, count: np.ndarray, n: np.ndarray) -> np.ndarray:
    """The vectorised hash_shingle of every n-token window of each text (one window of all tokens when shorter)."""
    width = np.repeat(np.minimum(n, count), count)  # window width at every token of its text
    remaining = np.repeat(np.cumsum(count), count) - np.arange(len(tokens))  # tokens from here to the text's end
    padded = np.concatenate([tokens, np.zeros(MAX_NGRAM, dtype=np.uint64)])
    partial = np.zeros(len(tokens), dtype=np.uint64)  # after step i: the first i + 1 terms of every window
    out = partial.copy()
    for i in range(int(width.max(initial=0))):
        partial += padded[i : i + len(tokens)] * np.uint64(_WEIGHTS[i])
        np.copyto(out, partial, where=width == i + 1)
    return (out[remaining >= width] >> np.uint64(32)).astype(np.uint32)


class Shingler:
    """Shingle hashes for batches of texts: fold, tokenise and hash with array operations over the whole batch."""

    def __init__(self, ngram: int, cjk_ngram: int) -> None:
        if not 1 <= max(ngram, cjk_ngram) <= MAX_NGRAM:
            raise ValueError(f"n-gram sizes must be between 1 and {MAX_NGRAM}")
        self.ngram, self.cjk_ngram = ngram, cjk_ngram
        self.fold, self.classes = _tables()

    def hashes(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(uint32 hash of every shingle, in text order; number of shingles per text); repeats are kept."""
        parts = [self._hashes(texts[start:stop]) for start, stop in text_chunks(texts)]
        if not parts:
            return np.zeros(0, dtype=np.uint32), np.zeros(0, dtype=np.int64)
        return np.concatenate([hashes for hashes, _ in parts]), np.concatenate([counts for _, counts in parts])

    def _hashes(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        tokens = tokenize(texts, self.fold, self.classes)
        count = np.diff(tokens.bounds)
        cjk = np.r_[0, np.cumsum(tokens.cjk)][tokens.bounds]
        in_tokens = np.r_[0, np.cumsum(tokens.ends - tokens.starts)][tokens.bounds]
        # datafactory.filters.text.is_cjk_dominant: the no-space-script share of token code points
        n = np.where(np.diff(cjk) > np.diff(in_tokens) * CJK_DOMINANT_RATIO, self.cjk_ngram, self.ngram)
        hashes = _shingle_hashes(tokens.hashes, count, n)
        return hashes, np.where(count > 0, count - np.minimum(n, count) + 1, 0)


@dataclass(frozen=True)
class Tokens:
    """The tokens of texts joined by "\n" (so none spans two): each token's 64-bit hash (of its folded code
    points), its code-point span in the joined text and whether it is a no-space-script character; text t owns
    tokens bounds[t]:bounds[t + 1] and begins at code point offsets[t]."""

    hashes: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    cjk: np.ndarray
    bounds: np.ndarray
    offsets: np.ndarray


def tokenize(texts: list[str], fold: np.ndarray | None = None, classes: np.ndarray | None = None) -> Tokens:
    """Tokens as the shingler sees them (filters.text.words of the folded text), with array operations over the
    whole batch; keep a batch under _CHUNK_POINTS code points (text_chunks) to bound the tables."""
    if fold is None or classes is None:
        fold, classes = _tables()
    points = np.frombuffer("\n".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    token_classes = classes[points]
    starts, ends = _token_spans(token_classes)
    lengths = np.fromiter((len(text) + 1 for text in texts), dtype=np.int64, count=len(texts))
    offsets = np.r_[0, np.cumsum(lengths)]
    bounds = np.r_[0, np.searchsorted(starts, offsets[1:])]
    return Tokens(_token_hashes(fold[points], starts, ends), starts, ends, token_classes[starts] == NO_SPACE,
                  bounds, offsets[:-1])


_LENGTH_MIX = 0xD6E8FEB86659FD93  # mixed into a window's hash with its length: windows of two lengths never match


def window_hashes(token_hashes: np.ndarray, lengths: list[int]) -> list[np.ndarray]:
    """For each length, a 64-bit hash of every run of that many consecutive tokens (len(token_hashes) - length + 1
    of them): the tokens' polynomial in _BASE, from one set of prefix sums, so a window costs the same whatever its
    length; the length is mixed in, so runs of two lengths never share a hash."""
    powers, inverses = _powers(len(token_hashes))
    prefix = np.zeros(len(token_hashes) + 1, dtype=np.uint64)
    np.cumsum(token_hashes * powers, out=prefix[1:])
    hashes = []
    for length in lengths:
        count = max(0, len(token_hashes) - length + 1)
        windows = (prefix[length : length + count] - prefix[:count]) * inverses[:count]
        hashes.append(_fmix64(windows ^ np.uint64((length * _LENGTH_MIX) & _MASK)))
    return hashes


def text_chunks(texts: list[str]) -> list[tuple[int, int]]:
    """Consecutive runs of texts with at most _CHUNK_POINTS code points together (a longer text alone)."""
    bounds, start, size = [], 0, 0
    for index, text in enumerate(texts):
        if size and size + len(text) > _CHUNK_POINTS:
            bounds.append((start, index))
            start, size = index, 0
        size += len(text) + 1
    if start < len(texts):
        bounds.append((start, len(texts)))
    return bounds


# --------------------------------------------------------------------------- signatures


def _min_hash_numpy(mixed: np.ndarray, counts: np.ndarray, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """out[doc] = min over the doc's shingles of a * h + b (mod 2^32), one document at a time."""
    start = 0
    for doc, count in enumerate(counts.tolist()):
        for block in range(start, start + count, _BLOCK_SHINGLES):  # long texts in blocks: bounded temporaries
            values = np.multiply.outer(a, mixed[block : min(block + _BLOCK_SHINGLES, start + count)])
            values += b[:, None]
            np.minimum(out[doc], values.min(axis=1), out=out[doc])
        start += count


def _min_hash_loops(mixed: np.ndarray, counts: np.ndarray, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """The same as _min_hash_numpy, as loops for numba: the permutation loop vectorises to 8 lanes of uint32."""
    start = 0
    for doc in range(len(counts)):
        row = out[doc]
        for i in range(start, start + counts[doc]):
            value = mixed[i]
            for p in range(len(a)):
                row[p] = min(row[p], np.uint32(a[p] * value + b[p]))
        start += counts[doc]


_min_hash_compiled = numba.njit(cache=True, nogil=True)(_min_hash_loops) if numba is not None else None


def min_hash(mixed: np.ndarray, counts: np.ndarray, a: np.ndarray, b: np.ndarray, compiled: bool = True) -> np.ndarray:
    """MinHash values (len(counts), len(a)) of pre-mixed shingle hashes grouped by text; EMPTY where none."""
    out = np.full((len(counts), len(a)), EMPTY, dtype=np.uint32)
    if compiled and _min_hash_compiled is not None:
        _min_hash_compiled(mixed, counts.astype(np.int64), a, b, out)
    else:
        _min_hash_numpy(mixed, counts, a, b, out)
    return out


class MinHasher:
    """MinHash signatures for batches of texts, with datasketch's permutations for (num_perm, seed)."""

    def __init__(self, config: DedupConfig) -> None:
        self.config = config
        self.shingler = Shingler(config.ngram, config.cjk_ngram)
        a, b = self.datasketch_minhash().permutations
        self._a = np.ascontiguousarray(a, dtype=np.uint32)
        self._b = np.ascontiguousarray(b, dtype=np.uint32)

    @property
    def num_perm(self) -> int:
        return self.config.num_perm

    def datasketch_minhash(self) -> MinHash:
        """An empty datasketch MinHash built like this hasher's signatures (for interop and checks)."""
        return MinHash(num_perm=self.num_perm, seed=self.config.seed, scheme=SCHEME, hashfunc=hash_shingle)

    def lean(self, signature: np.ndarray) -> LeanMinHash:
        """The signature as a datasketch LeanMinHash (usable in MinHashLSH and friends)."""
        return LeanMinHash(seed=self.config.seed, hashvalues=signature, scheme=SCHEME)

    def shingles(self, text: str) -> list[bytes]:
        return shingles(text, self.config.ngram, self.config.cjk_ngram)

    def signatures(self, texts: list[str], compiled: bool = True) -> np.ndarray:
        """uint32 array of shape (len(texts), num_perm); rows of texts without shingles are all EMPTY."""
        hashes, counts = self.shingler.hashes(texts)
        return min_hash(_fmix32(hashes), counts, self._a, self._b, compiled)


# --------------------------------------------------------------------------- LSH


@lru_cache(maxsize=64)
def _lsh_params(threshold: float, num_perm: int, fp_weight: float, fn_weight: float) -> tuple[int, int]:
    return _optimal_param(threshold, num_perm, fp_weight, fn_weight)


def lsh_params(config: DedupConfig) -> tuple[int, int]:
    """(bands, rows): as configured, else datasketch's minimum of weighted false-positive + false-negative area."""
    if config.bands and config.rows:
        return config.bands, config.rows
    return _lsh_params(
        config.threshold, config.num_perm, config.false_positive_weight, config.false_negative_weight
    )


def band_keys(signature: np.ndarray, bands: int, rows: int) -> list[str]:
    """One key per band, f"{band}:{xxh64 of the band's values}"; equal keys = candidate duplicates.

    An EMPTY signature (text without shingles) gets no keys: it is never a near-duplicate candidate.
    """
    if bands * rows > len(signature):
        raise ValueError(f"{bands} bands x {rows} rows need {bands * rows} values, got {len(signature)}")
    values = np.ascontiguousarray(signature, dtype="<u4")
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


# --------------------------------------------------------------------------- lines and paragraphs


def split_units(text: str, unit: str) -> list[str]:
    """Lines, or paragraphs (blocks separated by blank lines)."""
    return text.split("\n") if unit == "line" else _PARAGRAPH_BREAK.split(text)


def unit_key(unit_text: str, min_chars: int) -> int | None:
    """Key of a line/paragraph (normalised as for exact keys), None when it is too short to count."""
    normalized = normalize_for_hash(unit_text)
    return xxhash.xxh3_64_intdigest(normalized.encode("utf-8")) if len(normalized) >= min_chars else None


def unit_keys(text: str, unit: str, min_chars: int) -> list[int]:
    """Distinct keys of a document's lines/paragraphs, in first-seen order."""
    keys = (unit_key(part, min_chars) for part in split_units(text, unit))
    return list(dict.fromkeys(key for key in keys if key is not None))


def strip_units(text: str, unit: str, removed: set[int], min_chars: int) -> tuple[str, int]:
    """The text without the lines/paragraphs whose key is in ``removed``, and how many were removed."""
    parts = split_units(text, unit)
    kept = [part for part in parts if unit_key(part, min_chars) not in removed]
    joined = ("\n" if unit == "line" else "\n\n").join(kept)
    return _EXCESS_BLANK_LINES.sub("\n\n", joined).strip(), len(parts) - len(kept)


def strip_repeated_units(text: str, removed: set[int], config: ParagraphDedupConfig) -> tuple[str, int, int | None]:
    """(text without the repeated units, how many went, its word count when it is now too short to keep)."""
    stripped, count = strip_units(text, config.unit, removed, config.min_chars)
    words_left = word_count(stripped)
    return stripped, count, words_left if words_left < config.min_words else None


def word_count(text: str) -> int:
    """Words, with each no-space-script character (Han, kana, Thai, ...) counted as one."""
    return len(words(text))
