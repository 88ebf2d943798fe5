"""Documents with planted repeated spans of known lengths and offsets (and spans just under the threshold), for the
exact-substring step's test and benchmark, and the scoring of what the step removed against them."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from datafactory.filters.dedup import survivor_rank
from datafactory.filters.substrings import Hashed, keys


@dataclass(frozen=True)
class Planted:
    doc_id: str
    start: int
    end: int
    span: int  # which planted span
    tokens: int
    first: bool  # the copy the survivor rule keeps


def token_slice(text: str, first: int, count: int) -> str | None:
    hashed = Hashed.of(text)
    if hashed.tokens < first + count:
        return None
    return text[hashed.starts[first] : hashed.ends[first + count - 1]]


def plant_spans(hosts: Sequence[dict], donors: Sequence[str], rng: random.Random, lengths: Sequence[int],
                copies: int) -> tuple[list[dict], list[Planted]]:
    """Each length becomes one span (that many tokens cut from a donor text) inserted, between two words, into
    `copies` distinct hosts; hosts are rows with doc_id and text. Returns the rows with their new texts and where
    every copy landed, the survivor-rule first copy marked."""
    inserts: dict[str, list[tuple[int, int, str]]] = {}
    donors = list(donors)
    for number, length in enumerate(lengths):
        span = None
        while span is None:
            donor = donors.pop()
            span = token_slice(donor, rng.randrange(0, max(1, Hashed.of(donor).tokens - length)), length)
        for host in rng.sample(range(len(hosts)), copies):
            text = hosts[host]["text"]
            gaps = [index + 1 for index, char in enumerate(text) if char == " "] or [len(text)]
            inserts.setdefault(hosts[host]["doc_id"], []).append((rng.choice(gaps), number, span))
    rows, planted = [], []
    for host in hosts:
        text, shift, landed = host["text"], 0, []
        for offset, number, span in sorted(inserts.get(host["doc_id"], [])):
            piece = span + " "
            text = text[: offset + shift] + piece + text[offset + shift :]
            landed.append((offset + shift, number, span))
            shift += len(piece)
        rows.append({**host, "text": text})
        planted += [Planted(host["doc_id"], start, start + len(span), number, lengths[number], False)
                    for start, number, span in landed]
    return rows, mark_first(rows, planted)


def mark_first(rows: list[dict], planted: list[Planted]) -> list[Planted]:
    """The copy of each span in the document the `longest` survivor rule ranks first."""
    order = {row["doc_id"]: survivor_rank(row, "longest") + row["doc_id"] for row in rows}
    firsts = {}
    for copy in planted:
        if copy.span not in firsts or order[copy.doc_id] < order[firsts[copy.span].doc_id]:
            firsts[copy.span] = copy
    return [Planted(**{**copy.__dict__, "first": firsts[copy.span] == copy}) for copy in planted]


@dataclass(frozen=True)
class Score:
    recall: float  # share of the non-first planted copies' characters removed (spans of min_tokens or more)
    short_removed: int  # characters removed from planted spans under the threshold
    firsts_removed: int  # characters removed from the first copies
    unverified: int  # removed characters no min_tokens window held by another document covers (merged gaps)


def window_holders(rows: list[dict], min_tokens: int) -> dict[int, set[str]]:
    """Every min_tokens window of every document, by its 128-bit key: the documents holding it."""
    holders: dict[int, set[str]] = {}
    for row in rows:
        for key in keys(*Hashed.of(row["text"]).windows(min_tokens)):
            holders.setdefault(key, set()).add(row["doc_id"])
    return holders


def unverified_chars(text: str, doc_id: str, spans: list[dict], holders: dict[int, set[str]], min_tokens: int
                     ) -> int:
    """Characters of the removed spans that no window also held by another document covers."""
    hashed = Hashed.of(text)
    covered = np.zeros(len(text) + 1, dtype=np.int32)
    for position, key in enumerate(keys(*hashed.windows(min_tokens))):
        if holders.get(key, set()) - {doc_id}:
            covered[hashed.starts[position]] += 1
            covered[hashed.ends[position + min_tokens - 1]] -= 1
    inside = np.cumsum(covered)[:-1] > 0
    return sum(int((~inside[span["start"] : span["end"]]).sum()) for span in spans)


def score(rows: list[dict], planted: list[Planted], removed: list[dict], min_tokens: int) -> Score:
    texts = {row["doc_id"]: row["text"] for row in rows}
    cut: dict[str, list[dict]] = {}
    for span in removed:
        cut.setdefault(span["doc_id"], []).append(span)
    holders = window_holders(rows, min_tokens)

    def overlap(copy: Planted) -> int:
        return sum(max(0, min(span["end"], copy.end) - max(span["start"], copy.start))
                   for span in cut.get(copy.doc_id, []))

    long_copies = [copy for copy in planted if copy.tokens >= min_tokens and not copy.first]
    total = sum(copy.end - copy.start for copy in long_copies)
    return Score(recall=sum(overlap(copy) for copy in long_copies) / total if total else 1.0,
                 short_removed=sum(overlap(copy) for copy in planted if copy.tokens < min_tokens),
                 firsts_removed=sum(overlap(copy) for copy in planted if copy.first and copy.tokens >= min_tokens),
                 unverified=sum(unverified_chars(texts[doc_id], doc_id, spans, holders, min_tokens)
                                for doc_id, spans in cut.items()))


MIN_TOKENS = 50
LENGTHS = [50, 60, 80, 120, 200, 49, 49, 30]  # the last three are under the threshold and must stay


def words(rng: random.Random, count: int) -> str:
    return " ".join("".join(rng.choice("abcdefghijklmnop") for _ in range(6)) for _ in range(count))


def planted_rows() -> tuple[list[dict], list[Planted]]:
    """60 random-word pages (sources web and news) holding the LENGTHS spans three times each, a page that is little
    more than one of them, and an exact duplicate of a page."""
    rng = random.Random(7)
    hosts = [{"doc_id": f"doc-{i:03d}", "source": "web" if i % 2 else "news", "input_file": "t", "location": str(i),
              "url": None, "date": None, "meta": "{}", "text": words(rng, rng.randrange(120, 260)), "keep": True,
              "reason": None, "detail": None} for i in range(60)]
    donors = [words(rng, 400) for _ in range(len(LENGTHS) + 5)]
    rows, planted = plant_spans(hosts, donors, rng, LENGTHS, copies=3)
    span = next(copy for copy in planted if copy.span == 2)  # a page that is little more than a repeated span
    text = dict((row["doc_id"], row["text"]) for row in rows)[span.doc_id][span.start : span.end]
    rows.append({**hosts[0], "doc_id": "doc-short", "text": f"{text} {words(rng, 10)}"})
    planted.append(Planted("doc-short", 0, len(text), 2, span.tokens, False))
    rows.append({**rows[5], "doc_id": "doc-copy"})  # an exact duplicate: its spans are not a second copy
    return rows, mark_first(rows, planted)
