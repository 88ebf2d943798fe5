"""Decontamination: the n-grams of evaluation items in a compact index (sorted 64-bit hashes behind a bit-array
prefilter, memory-mapped by every worker), and the share of an item a document contains (GPT-3's 13-gram rule,
scored by how much of the item the matched n-grams cover, as OLMo's decon does)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datafactory.factory.atomic import temporary_name
from datafactory.factory.config import DecontaminateConfig
from datafactory.filters.dedup import Tokens, text_chunks, tokenize, window_hashes
from datafactory.filters.eval_sets import EvalItem
from datafactory.filters.text import CJK_DOMINANT_RATIO

CONTAMINATED = "contaminated"  # the ledger's reason for a dropped document
INDEX_VERSION = 1  # part of the index's address: a change of layout or hashing builds a new one
PREFILTER_BITS_PER_ENTRY = 16  # ~6% of probes pass the bit array to the exact search


def index_address(config: DecontaminateConfig, files_digest: str) -> str:
    """The content address of the index: the eval sets' bytes and every setting the index depends on."""
    settings = config.model_dump(include={"eval_sets", "ngram", "cjk_ngram", "min_words", "cjk_min_chars"})
    blob = json.dumps({"version": INDEX_VERSION, "settings": settings, "files": files_digest}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


# --------------------------------------------------------------------------- the index


def gram_lengths(tokens: Tokens, config: DecontaminateConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per text (an item's field): the length of its indexed windows (0: too short to mean anything), and whether it
    must be matched whole. CJK-dominant texts count characters (cjk_ngram, cjk_min_chars); a text shorter than its
    n-gram but at least the minimum is indexed in windows of the minimum and must be found whole."""
    count = np.diff(tokens.bounds)
    cjk_points = np.diff(np.r_[0, np.cumsum(tokens.cjk)][tokens.bounds])  # a CJK token is one code point
    token_points = np.diff(np.r_[0, np.cumsum(tokens.ends - tokens.starts)][tokens.bounds])
    cjk = cjk_points > token_points * CJK_DOMINANT_RATIO  # the shingler's rule (filters.text.is_cjk_dominant)
    ngram = np.where(cjk, config.cjk_ngram, config.ngram)
    minimum = np.where(cjk, config.cjk_min_chars, config.min_words)
    whole = (count < ngram) & (count >= minimum)
    return np.where(count >= ngram, ngram, np.where(whole, minimum, 0)).astype(np.uint32), whole


@dataclass
class ContaminationIndex:
    """Every indexed window of every item field: `hashes` sorted, with the field and the window's first token in it
    beside each; per field its item, token count and window length; a bit array over the top hash bits in front."""

    hashes: np.ndarray  # uint64, sorted
    entry_field: np.ndarray  # uint32
    entry_position: np.ndarray  # uint32
    field_item: np.ndarray  # uint32
    field_tokens: np.ndarray  # uint32
    field_gram: np.ndarray  # uint32: window length; a field shorter than its n-gram is matched whole
    field_whole: np.ndarray  # bool
    prefilter: np.ndarray  # uint8 bit array of 2**bits bits
    items: pa.Table  # eval_set, item_id

    ARRAYS = ("hashes", "entry_field", "entry_position", "field_item", "field_tokens", "field_gram", "field_whole",
              "prefilter")

    @property
    def bits(self) -> int:
        return int(len(self.prefilter) * 8).bit_length() - 1

    @cached_property
    def lengths(self) -> list[int]:
        return sorted({int(length) for length in np.unique(self.field_gram)} - {0})

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in self.ARRAYS)

    def facts(self, eval_sets: list[str]) -> dict:
        """What the stage's marker records of the index: items per eval set (an empty set too), entries, bytes, the
        prefilter's size."""
        counts = self.items.column("eval_set").value_counts().to_pylist()
        counted = {entry["values"]: entry["counts"] for entry in counts}
        return {"items": {name: counted.get(name, 0) for name in eval_sets}, "entries": len(self.hashes),
                "bytes": self.nbytes, "bytes_per_item": round(self.nbytes / max(len(self.items), 1)),
                "prefilter_bits": self.bits}

    @classmethod
    def build(cls, items: list[EvalItem], config: DecontaminateConfig) -> ContaminationIndex:
        texts = [text for item in items for text in item.fields]
        field_item = np.repeat(np.arange(len(items), dtype=np.uint32), [len(item.fields) for item in items])
        parts = [cls._field_windows(texts[start:stop], start, config) for start, stop in text_chunks(texts)]
        dtypes = (np.uint64, np.uint32, np.uint32, np.uint32, bool, np.uint32)
        hashes, fields, positions, grams, whole, counts = (
            np.concatenate([part[i] for part in parts]) if parts else np.zeros(0, dtype)
            for i, dtype in enumerate(dtypes))
        order = np.argsort(hashes, kind="stable")
        table = pa.table({"eval_set": pa.array([item.eval_set for item in items], pa.string()),
                          "item_id": pa.array([item.item_id for item in items], pa.string())})
        return cls(hashes[order], fields[order], positions[order], field_item, counts, grams, whole,
                   _prefilter(hashes), table)

    @staticmethod
    def _field_windows(texts: list[str], first: int, config: DecontaminateConfig) -> tuple[np.ndarray, ...]:
        """The windows of a chunk of field texts (hashes, field ordinals, positions) and per field its window
        length, whether it is matched whole, and its token count."""
        tokens = tokenize(texts)
        grams, whole = gram_lengths(tokens, config)
        owner = np.repeat(np.arange(len(texts)), np.diff(tokens.bounds))
        found = [[], [], []]
        lengths = sorted(set(grams.tolist()) - {0})
        for length, hashes in zip(lengths, window_hashes(tokens.hashes, lengths), strict=True):
            starts = np.arange(len(hashes))
            inside = owner[: len(hashes)]
            fits = (grams[inside] == length) & (starts + length <= tokens.bounds[inside + 1])
            chosen = np.flatnonzero(fits)
            found[0].append(hashes[chosen])
            found[1].append((owner[chosen] + first).astype(np.uint32))
            found[2].append((chosen - tokens.bounds[owner[chosen]]).astype(np.uint32))
        arrays = [np.concatenate(column) if column else np.zeros(0, dtype)
                  for column, dtype in zip(found, (np.uint64, np.uint32, np.uint32), strict=True)]
        return (*arrays, grams, whole, np.diff(tokens.bounds).astype(np.uint32))

    def save(self, directory: Path) -> Path:
        """Written whole under a temporary name, then renamed: a reader sees the complete index or none."""
        if directory.is_dir():
            return directory
        tmp = temporary_name(directory)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            for name in self.ARRAYS:
                np.save(tmp / f"{name}.npy", getattr(self, name))
            pq.write_table(self.items, tmp / "items.parquet")
            os.replace(tmp, directory)
        except OSError:
            if not directory.is_dir():
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return directory

    @classmethod
    def load(cls, directory: Path) -> ContaminationIndex:
        """Memory-mapped: the workers of one machine share the index's pages."""
        arrays = {name: np.load(directory / f"{name}.npy", mmap_mode="r") for name in cls.ARRAYS}
        return cls(**arrays, items=pq.read_table(directory / "items.parquet"))

    # ----------------------------------------------------------------------- matching

    def may_contain(self, hashes: np.ndarray) -> np.ndarray:
        slot = hashes >> np.uint64(64 - self.bits)
        return (self.prefilter[slot >> np.uint64(3)] >> (slot & np.uint64(7)).astype(np.uint8)) & 1 == 1

    def hits(self, tokens: Tokens) -> Hits:
        """Every indexed window found in the tokens within one text."""
        owner_end = np.repeat(tokens.bounds[1:], np.diff(tokens.bounds))
        empty = np.zeros(0, dtype=np.int64)  # an index without windows (no eval set) finds nothing
        starts_found, lengths_found, fields_found, positions_found = [empty], [empty], [empty], [empty]
        for length, hashes in zip(self.lengths, window_hashes(tokens.hashes, self.lengths), strict=True):
            within = np.arange(len(hashes)) + length <= owner_end[: len(hashes)]
            candidates = np.flatnonzero(self.may_contain(hashes) & within)
            low = np.searchsorted(self.hashes, hashes[candidates], side="left")
            high = np.searchsorted(self.hashes, hashes[candidates], side="right")
            repeats = high - low  # entries per window: 0 for the prefilter's false positives, 1 almost always else
            entries = np.repeat(low - np.r_[0, np.cumsum(repeats)[:-1]], repeats) + np.arange(repeats.sum())
            starts = np.repeat(candidates, repeats)
            fields = np.asarray(self.entry_field[entries], dtype=np.int64)
            same = np.asarray(self.field_gram[fields]) == length  # a hash collision across lengths is no hit
            starts_found.append(starts[same])
            lengths_found.append(np.full(same.sum(), length))
            fields_found.append(fields[same])
            positions_found.append(np.asarray(self.entry_position[entries[same]], dtype=np.int64))
        columns = (starts_found, lengths_found, fields_found, positions_found)
        return Hits(*(np.concatenate(column) for column in columns))


@dataclass(frozen=True)
class Hits:
    """Indexed windows found in a batch's tokens: where each starts, its length, its field, its place in the field."""

    start: np.ndarray
    length: np.ndarray
    field: np.ndarray
    position: np.ndarray


def _prefilter(hashes: np.ndarray) -> np.ndarray:
    bits = int(np.clip(np.ceil(np.log2(max(len(hashes), 1) * PREFILTER_BITS_PER_ENTRY)), 16, 34))
    array = np.zeros(1 << (bits - 3), dtype=np.uint8)
    slot = hashes >> np.uint64(64 - bits)
    slot = np.unique(slot)
    bit = np.uint8(1) << (slot & np.uint64(7)).astype(np.uint8)
    np.bitwise_or.at(array, (slot >> np.uint64(3)).astype(np.int64), bit)
    return array


# --------------------------------------------------------------------------- documents


@dataclass(frozen=True)
class Finding:
    """What one document holds of the eval sets: the item it overlaps most (contaminating items first), that
    overlap (share of the item field's tokens covered by matched windows), whether it contaminates the document,
    and, in remove_span mode, the character spans of the windows that matched contaminating items."""

    score: float = 0.0
    item: int | None = None
    contaminated: bool = False
    spans: tuple[tuple[int, int], ...] = ()


CLEAN = Finding()


@dataclass(frozen=True)
class Verdict:
    """What becomes of one document: kept as it is, kept without the matched spans (remove_span mode), or dropped
    (in remove_span mode only when nothing is left)."""

    finding: Finding
    keep: bool
    text: str
    removed_chars: int = 0


class Decontaminator:
    """Judges batches of documents against a ContaminationIndex."""

    def __init__(self, index: ContaminationIndex, config: DecontaminateConfig) -> None:
        self.index, self.config = index, config

    @property
    def needs_text(self) -> bool:
        """False for an index of no items: every document is clean whatever it says, so no text need be read."""
        return self.index.items.num_rows > 0

    def verdicts(self, texts: list[str | None]) -> list[Verdict]:
        """One verdict per text; texts may be None (unread) when the index needs none."""
        if not self.needs_text:
            return [Verdict(CLEAN, True, text) for text in texts]
        return [self._verdict(text, finding) for text, finding in zip(texts, self.findings(texts), strict=True)]

    def _verdict(self, text: str, finding: Finding) -> Verdict:
        if not finding.contaminated:
            return Verdict(finding, True, text)
        if self.config.mode != "remove_span":
            return Verdict(finding, False, text)
        kept, removed = remove_spans(text, finding.spans, self.config.margin_chars)
        return Verdict(finding, bool(kept), kept, removed)

    def findings(self, texts: list[str]) -> list[Finding]:
        found: list[Finding] = []
        for start, stop in text_chunks(texts):
            found += self._findings(texts[start:stop])
        return found

    def _findings(self, texts: list[str]) -> list[Finding]:
        tokens = tokenize(texts)
        hits = self.index.hits(tokens)
        if not len(hits.start):
            return [CLEAN] * len(texts)
        owner = np.repeat(np.arange(len(texts)), np.diff(tokens.bounds))[hits.start]
        order = np.lexsort((hits.position, hits.field, owner))
        owner, field, position, length = owner[order], hits.field[order], hits.position[order], hits.length[order]
        group = np.r_[True, (owner[1:] != owner[:-1]) | (field[1:] != field[:-1])]
        # union of the windows [position, position + length) per (document, field): each window adds what it
        # reaches past the previous one (windows of one field share a length)
        reach = np.where(group, length, np.minimum(length, np.diff(position, prepend=0)))
        starts = np.flatnonzero(group)
        covered = np.add.reduceat(reach, starts)
        group_field, group_owner = field[starts], owner[starts]
        score = np.minimum(covered / np.asarray(self.index.field_tokens[group_field]), 1.0)
        whole = np.asarray(self.index.field_whole[group_field])
        contaminates = np.where(whole, score >= 1.0, score >= self.config.min_overlap)
        item = np.asarray(self.index.field_item[group_field], dtype=np.int64)
        best = np.lexsort((-item, score, contaminates, group_owner))  # per document, its best group comes last
        last = np.r_[group_owner[best][1:] != group_owner[best][:-1], True]
        results = [CLEAN] * len(texts)
        window_group = np.cumsum(group) - 1
        for chosen in best[last].tolist():
            text = int(group_owner[chosen])
            spans: tuple[tuple[int, int], ...] = ()
            if contaminates[chosen] and self.config.mode == "remove_span":
                spans = self._spans(tokens, text, hits.start[order], length,
                                    (owner == text) & contaminates[window_group])
            results[text] = Finding(float(score[chosen]), int(item[chosen]), bool(contaminates[chosen]), spans)
        return results

    @staticmethod
    def _spans(tokens: Tokens, text: int, starts: np.ndarray, lengths: np.ndarray, chosen: np.ndarray
               ) -> tuple[tuple[int, int], ...]:
        """Character spans, within its text, of the chosen windows."""
        offset = int(tokens.offsets[text])
        first, last = starts[chosen], starts[chosen] + lengths[chosen] - 1
        return tuple(sorted(zip((tokens.starts[first] - offset).tolist(), (tokens.ends[last] - offset).tolist(),
                                strict=True)))


def remove_spans(text: str, spans: tuple[tuple[int, int], ...], margin: int) -> tuple[str, int]:
    """The text without the spans, each widened by `margin` characters on both sides (GPT-3's janitor cuts 200);
    the pieces left are joined by newlines. Returns the new text and the number of characters cut."""
    merged: list[list[int]] = []
    for start, end in sorted((max(0, start - margin), min(len(text), end + margin)) for start, end in spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    pieces, last = [], 0
    for start, end in merged:
        pieces.append(text[last:start])
        last = end
    pieces.append(text[last:])
    return "\n".join(piece.strip() for piece in pieces if piece.strip()), sum(end - start for start, end in merged)
