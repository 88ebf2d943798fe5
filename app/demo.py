"""Built-in demo corpus: original multilingual documents plus seeded, generated dirt with ground truth.

`write_demo_corpus` writes jsonl.gz / jsonl.zst / parquet inputs, `ground_truth.jsonl` and `demo.yaml`.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from fractions import Fraction
from functools import lru_cache
from importlib import resources
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from datafactory.filters.text import NO_SPACE_CLASS
from datafactory.mixtures.methods import largest_remainder

LANGS = ("en", "zh", "de", "fr", "es", "ja", "ru")
CJK_LANGS = frozenset({"zh", "ja"})
KINDS = (
    "clean",
    "exact_duplicate",
    "near_duplicate",
    "boilerplate",
    "spam",
    "short",
    "mixed_language",
    "clean_with_boilerplate",
)
SOURCES = ("web", "news", "zh_forum")
QUALITY = {
    "clean": "hq",
    "exact_duplicate": "hq",
    "near_duplicate": "hq",
    "clean_with_boilerplate": "hq",
    "boilerplate": "lq",
    "spam": "lq",
    "short": "lq",
    "mixed_language": None,
}
# share of each kind in the corpus; "clean" takes whatever rounding leaves over
KIND_SHARES = {
    "exact_duplicate": 0.08,
    "near_duplicate": 0.08,
    "boilerplate": 0.07,
    "spam": 0.06,
    "short": 0.05,
    "mixed_language": 0.03,
    "clean_with_boilerplate": 0.03,
}
LANG_WEIGHTS = {"en": 0.36, "zh": 0.30, "de": 0.07, "fr": 0.07, "es": 0.07, "ja": 0.07, "ru": 0.06}
SPAM_LANG_WEIGHTS = {"en": 0.40, "zh": 0.45, "de": 0.03, "fr": 0.03, "es": 0.03, "ja": 0.03, "ru": 0.03}
MIXED_PAIRS = (
    ("en", "zh", 4),
    ("zh", "en", 2),
    ("en", "de", 2),
    ("fr", "en", 2),
    ("es", "en", 2),
    ("ja", "en", 2),
    ("ru", "en", 2),
    ("zh", "ja", 1),
    ("de", "fr", 1),
    ("es", "fr", 1),
)
# topics whose sentences may be recombined with a topic's own once its own pool is used up
RELATED_TOPICS = {
    "science": ("nature", "technology"),
    "nature": ("science", "travel"),
    "technology": ("science", "economics"),
    "economics": ("technology", "education"),
    "health": ("cooking", "nature"),
    "cooking": ("health", "culture"),
    "history": ("culture", "travel"),
    "travel": ("history", "culture"),
    "culture": ("history", "education"),
    "education": ("culture", "health"),
}
TRADITIONAL_SHARE = 0.04  # of generated Chinese documents
MAX_CLEAN_JACCARD = 0.3  # generated clean docs overlap any other clean doc by less than this
NEAR_DUP_RANGE = (0.8, 0.95)  # target Jaccard of word/character 5-shingles for near-duplicates
WEB_FILES = 4
DEMO_CONFIG = """\
# Demo corpus written by `factory demo` (seed {seed}, {n_docs} documents); paths relative to this file.
inputs:
  - {{path: "data/web-*.jsonl.gz", source: web}}
  - {{path: "data/news.jsonl.zst", source: news}}
  - {{path: "data/zh_forum.parquet", source: zh_forum, text_field: content}}
decontaminate:  # the demo's own quiz items (evals/); point eval_sets at real MMLU, GSM8K, C-Eval, CMMLU exports
  eval_sets:
    - {{path: "evals/demo_qa.jsonl", name: demo_qa, fields: [question, choices, answer]}}
tokenize:
  seq_len: 128
  rows_per_shard: 256
"""

_TOKEN = re.compile(rf"[{NO_SPACE_CLASS}]|[^\W_{NO_SPACE_CLASS}]+")
_CJK_SENT = re.compile(r"[^。！？]+(?:[。！？]+[”」』）]?|$)")
_SENT = re.compile(r"(?<=[.!?…])\s+")


# --------------------------------------------------------------------------- base documents


@dataclass(frozen=True)
class BaseDoc:
    """One hand-written document: its language, topic and sentences grouped by paragraph."""

    lang: str
    topic: str
    paragraphs: tuple[tuple[str, ...], ...]
    script: str = ""  # "hant" for Traditional Chinese, else empty

    @property
    def text(self) -> str:
        return _join_paragraphs(self.paragraphs, self.lang)


def _split_sentences(paragraph: str, lang: str) -> tuple[str, ...]:
    if lang in CJK_LANGS:
        parts = [m.group(0).strip() for m in _CJK_SENT.finditer(paragraph)]
    else:
        parts = [p.strip() for p in _SENT.split(paragraph)]
    return tuple(p for p in parts if p)


def _join_paragraphs(paragraphs: Iterable[Sequence[str]], lang: str) -> str:
    sep = "" if lang in CJK_LANGS else " "
    return "\n\n".join(sep.join(sentences) for sentences in paragraphs)


def _parse_texts(raw: str, lang: str) -> list[BaseDoc]:
    docs = []
    for block in re.split(r"^=====\s*$", raw, flags=re.M):
        lines = block.strip().splitlines()
        if not lines:
            continue
        match = re.fullmatch(r"\[(\w+)(?:\s+(\w+))?\]", lines[0].strip())
        topic, script = (match.group(1), match.group(2) or "") if match else ("general", "")
        body = "\n".join(lines[1:] if match else lines)
        paragraphs = tuple(
            _split_sentences(" ".join(p.split()) if lang not in CJK_LANGS else "".join(p.split()), lang)
            for p in re.split(r"\n\s*\n", body)
            if p.strip()
        )
        docs.append(BaseDoc(lang, topic, paragraphs, script))
    return docs


@lru_cache(maxsize=1)
def base_documents() -> dict[str, tuple[BaseDoc, ...]]:
    """The hand-written documents shipped in app/demo_texts, by language."""
    root = resources.files("datafactory.app") / "demo_texts"
    texts = {lang: (root / f"{lang}.txt").read_text(encoding="utf-8") for lang in LANGS}
    return {lang: tuple(_parse_texts(raw, lang)) for lang, raw in texts.items()}


# --------------------------------------------------------------------------- similarity


def shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    """Word n-grams of lowercased text; CJK characters count as one word each."""
    tokens = _TOKEN.findall(text.lower())
    if len(tokens) < n:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def jaccard(a: str | set, b: str | set, n: int = 5) -> float:
    """Jaccard similarity of the n-shingle sets of two texts (or of two precomputed sets)."""
    sa = shingles(a, n) if isinstance(a, str) else a
    sb = shingles(b, n) if isinstance(b, str) else b
    if not sa and not sb:
        return 1.0
    inter = len(sa & sb)
    return inter / (len(sa) + len(sb) - inter)


# --------------------------------------------------------------------------- clean text generation


class _CleanGenerator:
    """Recombines sentence runs of same-language base documents into new, mutually distinct texts.

    Overlap is tracked on sentences: the token-weighted Jaccard of shared sentences, a cheap and slightly
    pessimistic stand-in for the Jaccard of 5-shingles (shingles across sentence boundaries are ignored).
    """

    def __init__(self, rng: random.Random, max_jaccard: float = MAX_CLEAN_JACCARD) -> None:
        self.rng = rng
        self.max_jaccard = max_jaccard
        self.base = base_documents()
        self.sentences: dict[str, list[str]] = {}
        self.weight: dict[str, list[int]] = {}
        self.docs: dict[str, list[list[list[int]]]] = {}  # lang -> doc -> paragraph -> sentence ids
        self.index: dict[str, dict[int, list[int]]] = {}  # lang -> sentence id -> registered texts
        self.sizes: dict[str, list[int]] = {}
        self.attempts = 0
        self.tier = 0
        self.worst = 0.0  # highest overlap accepted (above max_jaccard only as a last resort)
        for lang in LANGS:
            ids: dict[str, int] = {}
            docs = []
            for doc in self.base[lang]:
                docs.append([[ids.setdefault(sent, len(ids)) for sent in para] for para in doc.paragraphs])
            self.sentences[lang] = list(ids)
            self.weight[lang] = [len(_TOKEN.findall(sent)) for sent in ids]
            self.docs[lang] = docs
            self.index[lang] = {}
            self.sizes[lang] = []
            for doc in docs:
                self._register(lang, {sid for para in doc for sid in para})

    def _register(self, lang: str, sids: set[int]) -> None:
        number = len(self.sizes[lang])
        self.sizes[lang].append(sum(self.weight[lang][sid] for sid in sids))
        index = self.index[lang]
        for sid in sids:
            index.setdefault(sid, []).append(number)

    def _overlap(self, lang: str, sids: set[int]) -> float:
        weight, index, sizes = self.weight[lang], self.index[lang], self.sizes[lang]
        shared: dict[int, int] = {}
        for sid in sids:
            for other in index.get(sid, ()):
                shared[other] = shared.get(other, 0) + weight[sid]
        size = sum(weight[sid] for sid in sids)
        return max((inter / (size + sizes[o] - inter) for o, inter in shared.items()), default=0.0)

    def _compose(self, pool: Sequence[int], lang: str) -> list[list[int]]:
        rng = self.rng
        docs, weight = self.docs[lang], self.weight[lang]
        n_par = rng.randint(3, 5) if lang in ("en", "zh") else rng.randint(3, 4)
        min_tokens = 220 if lang in CJK_LANGS else 90
        used: set[tuple[int, int]] = set()
        paragraphs: list[list[int]] = []
        tokens = 0
        while len(paragraphs) < n_par or tokens < min_tokens:
            d = rng.choice(pool)
            p = 0 if not paragraphs else rng.randrange(len(docs[d]))
            if (d, p) in used and len(used) < 4 * len(pool):
                continue
            used.add((d, p))
            para = docs[d][p]
            k = min(len(para), rng.randint(2, 3))
            start = 0 if (not paragraphs or rng.random() < 0.3) else rng.randint(0, len(para) - k)
            run = para[start : start + k]
            if rng.random() < 0.35:  # graft one sentence of another document onto the run
                extra = rng.choice(rng.choice(docs[rng.choice(pool)]))
                if extra not in run:
                    run = [*run, extra]
            paragraphs.append(run)
            tokens += sum(weight[sid] for sid in run)
        return paragraphs

    def generate(self, lang: str, topic: str | None = None) -> str:
        docs = self.base[lang]
        # Traditional Chinese documents are only recombined with each other, and used sparingly
        script = "hant" if lang == "zh" and self.rng.random() < TRADITIONAL_SHARE else ""
        mine = [i for i, d in enumerate(docs) if d.script == script]
        related = {topic, *RELATED_TOPICS.get(topic or "", ())}
        pools = [
            [i for i in mine if docs[i].topic == topic],
            [i for i in mine if docs[i].topic in related],
            mine,
        ]
        pools = [pool for pool in pools if len(pool) >= 3]
        best, best_overlap = None, 2.0
        for tier, pool in enumerate(pools):
            self.tier = tier
            for _ in range(25):
                self.attempts += 1
                paragraphs = self._compose(pool, lang)
                sids = {sid for para in paragraphs for sid in para}
                overlap = self._overlap(lang, sids)
                if overlap < best_overlap:
                    best, best_overlap = (paragraphs, sids), overlap
                if overlap < self.max_jaccard:
                    break
            if best_overlap < self.max_jaccard:
                break
        assert best is not None
        self.worst = max(self.worst, best_overlap)
        self._register(lang, best[1])
        sentences = self.sentences[lang]
        return _join_paragraphs(([sentences[sid] for sid in para] for para in best[0]), lang)


# --------------------------------------------------------------------------- dirt: boilerplate, spam, short


_PHRASE_TABLES = ("nav", "spam", "short")


@lru_cache(maxsize=1)
def _phrases() -> dict[str, dict]:
    """The phrase tables shipped as demo_texts/{nav,spam,short}.json, each keyed by language.

    nav: menu items, cookie banners, footer lines, copyright, "read more" and "related" labels, and "sites" (two
    word lists whose pairs name a site); spam: keywords and templates; short: templates of near-empty pages.
    """
    root = resources.files("datafactory.app") / "demo_texts"
    return {name: json.loads((root / f"{name}.json").read_text(encoding="utf-8")) for name in _PHRASE_TABLES}


def _site(rng: random.Random, lang: str) -> str:
    first, second = _phrases()["nav"][lang]["sites"]
    sep = "" if lang in ("zh", "ja", "de") else " "
    return f"{rng.choice(first)}{sep}{rng.choice(second)}"


def _fill(rng: random.Random, template: str, **extra: str) -> str:
    values = {
        "year": str(rng.randint(2015, 2024)),
        "n": str(rng.randint(10, 99999)),
        "p": str(rng.choice((50, 100, 150, 200, 300, 500))),
        "n3": f"{rng.randint(0, 999):03d}",
        "n4": f"{rng.randint(0, 9999):04d}",
        "n8": f"{rng.randint(0, 99999999):08d}",
        "host": f"example{rng.randint(1, 99)}.com",
    }
    values.update(extra)
    return template.format(**values)


def _headline(rng: random.Random, lang: str) -> str:
    doc = rng.choice(base_documents()[lang])
    sentence = rng.choice(rng.choice(doc.paragraphs))
    if lang in CJK_LANGS:
        return sentence[: rng.randint(8, 16)]
    return " ".join(sentence.split()[: rng.randint(4, 8)]).rstrip(",;:")


def _footer_lines(rng: random.Random, lang: str, k: int) -> list[str]:
    nav = _phrases()["nav"][lang]
    lines = [_fill(rng, line) for line in rng.sample(nav["footer"], min(k, len(nav["footer"])))]
    if rng.random() < 0.6:
        lines.append(_fill(rng, nav["copyright"], site=_site(rng, lang)))
    return lines


def _boilerplate_page(rng: random.Random, lang: str) -> str:
    nav = _phrases()["nav"][lang]
    menu = nav["menu"]
    site = _site(rng, lang)
    lines = [site, " | ".join(rng.sample(menu, rng.randint(5, 9)))]
    if rng.random() < 0.5:
        lines.append(" > ".join([menu[0], *rng.sample(menu[1:], rng.randint(1, 2))]))
    if rng.random() < 0.5:
        lines.append(rng.choice(nav["cookie"]))
    lines.append(nav["related"])
    for _ in range(rng.randint(3, 8)):
        lines.append(f"{_headline(rng, lang)} {nav['more']}" if rng.random() < 0.5 else _headline(rng, lang))
    lines += _footer_lines(rng, lang, rng.randint(2, 5))
    if rng.random() < 0.4:
        lines.append(rng.choice(nav["cookie"]))
    return "\n".join(lines)


def _spam_page(rng: random.Random, lang: str) -> str:
    spam = _phrases()["spam"][lang]
    kws, templates = spam["keywords"], spam["templates"]
    site = _site(rng, lang)
    sep = "、" if lang in CJK_LANGS else ", "
    focus = rng.sample(kws, 3)
    lines = []
    for _ in range(rng.randint(5, 16)):
        if rng.random() < 0.3:
            lines.append(sep.join(rng.sample(kws, rng.randint(5, min(10, len(kws))))))
        else:
            k, k2, k3 = (rng.choice(focus) if rng.random() < 0.7 else rng.choice(kws) for _ in range(3))
            lines.append(_fill(rng, rng.choice(templates), site=site, k=k, k2=k2, k3=k3))
    if rng.random() < 0.5:
        lines.append(_fill(rng, _phrases()["nav"][lang]["copyright"], site=site))
    return "\n".join(lines)


def _short_page(rng: random.Random, lang: str) -> str:
    if rng.random() < 0.25:  # teaser: the first sentence of an article, then a "read more" link
        doc = rng.choice(base_documents()[lang])
        return f"{doc.paragraphs[0][0]}\n{_phrases()['nav'][lang]['more']}"
    word = rng.choice(_TOKEN.findall(_headline(rng, lang)) or ["?"])
    lines = [_fill(rng, rng.choice(_phrases()["short"][lang]), w=word) for _ in range(rng.randint(1, 2))]
    return "\n".join(dict.fromkeys(lines))


def _mixed_page(rng: random.Random, lang_a: str, lang_b: str) -> str:
    base = base_documents()
    doc_a = rng.choice(base[lang_a])
    same_topic = [d for d in base[lang_b] if d.topic == doc_a.topic]
    doc_b = rng.choice(same_topic or base[lang_b])
    paras_a = [_join_paragraphs([p], lang_a) for p in doc_a.paragraphs]
    paras_b = [_join_paragraphs([p], lang_b) for p in doc_b.paragraphs]
    n = min(len(paras_a), len(paras_b), rng.randint(2, 3))
    start_a, start_b = rng.randint(0, len(paras_a) - n), rng.randint(0, len(paras_b) - n)
    out = []
    for a, b in zip(paras_a[start_a : start_a + n], paras_b[start_b : start_b + n], strict=True):
        out += [a, b]
    return "\n\n".join(out)


# --------------------------------------------------------------------------- near-duplicates


def _near_duplicate(rng: random.Random, text: str, lang: str, target: float) -> str:
    """Edit a copy of text until its 5-shingle Jaccard with text is at most target (and at least 0.8).

    Edits: swap two adjacent paragraphs, append a sentence from another document, then delete, substitute
    or insert single words (single characters for Chinese and Japanese). An edit that would take the
    similarity below NEAR_DUP_RANGE[0] is skipped.
    """
    cjk = lang in CJK_LANGS
    sep = "" if cjk else " "
    original = shingles(text)
    units = [list(p) if cjk else p.split(" ") for p in text.split("\n\n")]

    def render(u: list[list[str]]) -> str:
        return "\n\n".join(sep.join(p) for p in u)

    def accept(trial: list[list[str]]) -> bool:
        nonlocal units, current, sim
        candidate = render(trial)
        new_sim = jaccard(original, shingles(candidate))
        if new_sim < NEAR_DUP_RANGE[0]:
            return False
        units, current, sim = trial, candidate, new_sim
        return True

    current, sim = text, 1.0
    if len(units) >= 2 and rng.random() < 0.5:
        trial = [list(p) for p in units]
        i = rng.randrange(len(trial) - 1)
        trial[i], trial[i + 1] = trial[i + 1], trial[i]
        accept(trial)
    if rng.random() < 0.6:
        donor = rng.choice(base_documents()[lang])
        extra = rng.choice(rng.choice(donor.paragraphs))
        trial = [list(p) for p in units]
        i = rng.randrange(len(trial))
        trial[i] += list(extra) if cjk else extra.split(" ")
        accept(trial)
    vocab = [w for p in units for w in p if _TOKEN.fullmatch(w) or (not cjk and w)]
    for _ in range(400):
        if sim <= target:
            break
        trial = [list(p) for p in units]
        p = rng.randrange(len(trial))
        if len(trial[p]) < 4:
            continue
        i = rng.randrange(len(trial[p]))
        if cjk and not _TOKEN.fullmatch(trial[p][i]):
            continue  # keep punctuation in place
        op = rng.random()
        if op < 0.35:
            del trial[p][i]
        elif op < 0.85:
            trial[p][i] = rng.choice(vocab)
        else:
            trial[p].insert(i, rng.choice(vocab))
        accept(trial)
    return current


# --------------------------------------------------------------------------- corpus assembly


@dataclass
class _Doc:
    kind: str
    lang: str
    text: str
    date: str
    original: _Doc | None = None
    pair: tuple[str, ...] = ()  # the two languages of a mixed-language page
    source: str = ""
    id: str = ""
    url: str = ""
    eval_item: str | None = None  # the demo eval item planted in the page, if any


@dataclass
class DemoCorpus:
    """What `write_demo_corpus` wrote: file paths and document counts."""

    root: Path
    data_files: list[Path]
    ground_truth: Path
    config: Path
    counts: dict[str, int]  # by kind
    lang_counts: dict[str, int] = field(default_factory=dict)
    source_counts: dict[str, int] = field(default_factory=dict)


def _allocate(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Split total into integer parts proportional to weights (largest remainder, ties by name)."""
    norm = sum(Fraction(weight) for weight in weights.values())
    return largest_remainder({key: total * Fraction(weight) / norm for key, weight in weights.items()})


def _kind_counts(n_docs: int) -> dict[str, int]:
    counts = {kind: round(n_docs * share) for kind, share in KIND_SHARES.items()}
    while sum(counts.values()) > n_docs - 1:  # keep at least one clean document
        largest = max(counts, key=lambda k: counts[k])
        counts[largest] -= 1
    return {"clean": n_docs - sum(counts.values()), **counts}


def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


def _random_date(rng: random.Random) -> str:
    return (date(2018, 1, 1) + timedelta(days=rng.randrange(7 * 365))).isoformat()


def _later_date(rng: random.Random, day: str) -> str:
    return (date.fromisoformat(day) + timedelta(days=rng.randint(0, 400))).isoformat()


def _source(rng: random.Random, doc: _Doc) -> str:
    if doc.kind == "mixed_language":
        return "zh_forum" if "zh" in doc.pair and rng.random() < 0.4 else "web"
    junk = doc.kind in ("boilerplate", "spam", "short")
    if doc.lang == "zh":
        forum, news = (0.4, 0.0) if junk else (0.5, 0.2)
    elif doc.lang == "ja":
        forum, news = (0.0, 0.0) if junk else (0.08, 0.25)
    else:
        forum, news = 0.0, (0.03 if junk else 0.3)
    r = rng.random()
    return "zh_forum" if r < forum else "news" if r < forum + news else "web"


def _generate_docs(n_docs: int, rng: random.Random) -> tuple[list[_Doc], _CleanGenerator]:
    counts = _kind_counts(n_docs)
    gen = _CleanGenerator(rng)
    base = base_documents()
    topics = {lang: sorted({d.topic for d in base[lang]}) for lang in LANGS}

    clean: list[_Doc] = []
    for lang, k in _allocate(counts["clean"], LANG_WEIGHTS).items():
        docs = list(base[lang])
        rng.shuffle(docs)
        clean += [_Doc("clean", lang, d.text, _random_date(rng)) for d in docs[:k]]
        for i in range(k - min(k, len(docs))):
            topic = topics[lang][i % len(topics[lang])]
            clean.append(_Doc("clean", lang, gen.generate(lang, topic), _random_date(rng)))
    out = list(clean)
    for _ in range(counts["exact_duplicate"]):
        orig = rng.choice(clean)
        out.append(_Doc("exact_duplicate", orig.lang, orig.text, _later_date(rng, orig.date), orig))
    for _ in range(counts["near_duplicate"]):
        orig = rng.choice(clean)
        text = _near_duplicate(rng, orig.text, orig.lang, rng.uniform(0.82, 0.93))
        out.append(_Doc("near_duplicate", orig.lang, text, _later_date(rng, orig.date), orig))
    for _ in range(counts["boilerplate"]):
        lang = _weighted(rng, LANG_WEIGHTS)
        out.append(_Doc("boilerplate", lang, _boilerplate_page(rng, lang), _random_date(rng)))
    for _ in range(counts["spam"]):
        lang = _weighted(rng, SPAM_LANG_WEIGHTS)
        out.append(_Doc("spam", lang, _spam_page(rng, lang), _random_date(rng)))
    for _ in range(counts["short"]):
        lang = _weighted(rng, LANG_WEIGHTS)
        out.append(_Doc("short", lang, _short_page(rng, lang), _random_date(rng)))
    pair_weights = {f"{a}+{b}": w for a, b, w in MIXED_PAIRS}
    seen: set[str] = set()
    for _ in range(counts["mixed_language"]):
        for _attempt in range(50):  # pages are distinct unless the pool of combinations runs out
            lang_a, lang_b = _weighted(rng, pair_weights).split("+")
            text = _mixed_page(rng, lang_a, lang_b)
            if text not in seen:
                break
        seen.add(text)
        out.append(_Doc("mixed_language", "mixed", text, _random_date(rng), pair=(lang_a, lang_b)))
    for _ in range(counts["clean_with_boilerplate"]):
        lang = _weighted(rng, LANG_WEIGHTS)
        body = gen.generate(lang, rng.choice(topics[lang]))
        tail = _footer_lines(rng, lang, rng.randint(2, 4))
        if rng.random() < 0.4:
            tail.insert(0, rng.choice(_phrases()["nav"][lang]["cookie"]))
        out.append(_Doc("clean_with_boilerplate", lang, body + "\n\n" + "\n".join(tail), _random_date(rng)))
    return out, gen


def _plant_eval_items(docs: list[_Doc], rng: random.Random) -> list[dict]:
    """Copies each demo eval item, as a scraped quiz, into one clean page of its language that has no planted
    duplicate (so duplicates stay what the ground truth says); returns the items, the eval set to write."""
    shipped = resources.files("datafactory.app") / "demo_texts" / "eval_items.jsonl"
    items = [json.loads(line) for line in shipped.read_text(encoding="utf-8").splitlines()]
    copied = {id(doc.original) for doc in docs if doc.original is not None}
    hosts = [doc for doc in docs if doc.kind == "clean" and id(doc) not in copied]
    rng.shuffle(hosts)
    for item in items:
        host = next((doc for doc in hosts if doc.lang == item["lang"] and doc.eval_item is None), None)
        if host is not None:
            choices = "\n".join(f"{letter}. {choice}" for letter, choice in zip("ABCD", item["choices"], strict=False))
            host.text += f"\n\n{item['question']}\n{choices}\n{item['answer']}"
            host.eval_item = item["id"]
    return [{key: item[key] for key in ("id", "question", "choices", "answer")} for item in items]


def _assign_ids(rng: random.Random, docs: list[_Doc]) -> dict[str, list[_Doc]]:
    by_source: dict[str, list[_Doc]] = {s: [] for s in SOURCES}
    for doc in docs:
        doc.source = _source(rng, doc)
        by_source[doc.source].append(doc)
    for source, items in by_source.items():
        rng.shuffle(items)
        for i, doc in enumerate(items):
            doc.id = f"demo-{source}-{i:06d}"
            y, m, d = doc.date.split("-")
            if source == "web":
                host = f"{('blog', 'www', 'info', 'shop', 'daily', 'home')[i % 6]}{i % 37}.example.com"
                doc.url = f"https://{host}/{y}/{m}/post-{i:06d}.html"
            elif source == "news":
                lang = doc.lang if doc.lang in LANGS else "intl"
                doc.url = f"https://news.example.org/{lang}/{y}/{m}/{d}/{i:06d}"
            else:
                doc.url = f"https://forum.example.net/thread-{100000 + i}-1-1.html"
    return by_source


def _jsonl(records: Iterable[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def _record(doc: _Doc, text_field: str = "text") -> dict:
    return {"id": doc.id, text_field: doc.text, "url": doc.url, "date": doc.date}


def write_demo_corpus(out_dir: Path, n_docs: int = 3000, seed: int = 0) -> DemoCorpus:
    """Write the demo inputs, ground_truth.jsonl and demo.yaml under out_dir (same seed, same bytes)."""
    if n_docs < 1:
        raise ValueError("n_docs must be at least 1")
    out_dir = Path(out_dir)
    data = out_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    for stale in data.glob("web-*.jsonl.gz"):
        stale.unlink()
    rng = random.Random(seed)
    docs, _ = _generate_docs(n_docs, rng)
    evals = out_dir / "evals" / "demo_qa.jsonl"
    evals.parent.mkdir(exist_ok=True)
    evals.write_bytes(_jsonl(_plant_eval_items(docs, random.Random(f"evals-{seed}"))))
    by_source = _assign_ids(rng, docs)

    files: list[Path] = []
    web = by_source["web"]
    n_files = max(1, min(WEB_FILES, math.ceil(len(web) / 200)))
    per_file = math.ceil(len(web) / n_files) if web else 0
    for f in range(n_files):
        path = data / f"web-{f:05d}.jsonl.gz"
        payload = _jsonl(_record(d) for d in web[f * per_file : (f + 1) * per_file])
        path.write_bytes(gzip.compress(payload, compresslevel=6, mtime=0))
        files.append(path)
    news = data / "news.jsonl.zst"
    payload = _jsonl(_record(d) for d in by_source["news"])
    news.write_bytes(zstandard.ZstdCompressor(level=10).compress(payload))
    files.append(news)
    forum = data / "zh_forum.parquet"
    rows = [_record(d, "content") for d in by_source["zh_forum"]]
    table = pa.table(
        {col: pa.array([r[col] for r in rows], type=pa.string()) for col in ("id", "content", "url", "date")}
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    forum.write_bytes(buf.getvalue())
    files.append(forum)

    truth = out_dir / "ground_truth.jsonl"
    truth.write_bytes(
        _jsonl(
            {
                "id": d.id,
                "source": d.source,
                "lang": d.lang,
                "kind": d.kind,
                "duplicate_of": d.original.id if d.original else None,
                "quality": QUALITY[d.kind],
                "eval_item": d.eval_item,
            }
            for source in SOURCES
            for d in by_source[source]
        )
    )
    config = out_dir / "demo.yaml"
    config.write_text(DEMO_CONFIG.format(seed=seed, n_docs=n_docs), encoding="utf-8")
    return DemoCorpus(
        root=out_dir,
        data_files=files,
        ground_truth=truth,
        config=config,
        counts={kind: n for kind in KINDS if (n := sum(d.kind == kind for d in docs))},
        lang_counts={lang: n for lang in (*LANGS, "mixed") if (n := sum(d.lang == lang for d in docs))},
        source_counts={s: len(by_source[s]) for s in SOURCES},
    )


def read_ground_truth(path: Path) -> list[dict]:
    """Rows of a ground_truth.jsonl file."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def quality_training_examples(seed: int = 0) -> list[tuple[str, str]]:
    """(text, "hq" | "lq") pairs for the default quality classifier.

    hq: the base documents and recombinations of them; lq: generated boilerplate, spam and short pages.
    Uses its own seed stream, so none of these generated texts is one of the demo corpus's documents.
    """
    rng = random.Random(f"demo-quality-training:{seed}")
    gen = _CleanGenerator(rng)
    base = base_documents()
    examples: list[tuple[str, str]] = []
    for lang in LANGS:
        examples += [(doc.text, "hq") for doc in base[lang]]
        topics = sorted({d.topic for d in base[lang]})
        for i in range(2 * len(base[lang])):
            examples.append((gen.generate(lang, topics[i % len(topics)]), "hq"))
    n_hq = len(examples)
    makers = (_boilerplate_page, _spam_page, _short_page)
    for i in range(n_hq):
        maker = makers[i % 3]
        lang = _weighted(rng, SPAM_LANG_WEIGHTS if maker is _spam_page else LANG_WEIGHTS)
        examples.append((maker(rng, lang), "lq"))
    rng.shuffle(examples)
    return examples
