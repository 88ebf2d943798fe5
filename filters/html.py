"""HTML to main-content text: charset-robust decoding, a fast extractor (resiliparse), an accurate one
(trafilatura), and a cascade that runs the accurate one only on the pages where the fast one is unsure."""

from __future__ import annotations

import codecs
import logging
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import trafilatura
from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.encoding import bytes_to_str, detect_encoding, map_encoding_to_html5
from resiliparse.parse.html import HTMLTree

from datafactory.filters.text import NO_SPACE_CLASS

Mode = Literal["cascade", "resiliparse", "trafilatura"]
MODES: tuple[str, ...] = ("cascade", "resiliparse", "trafilatura")

# resiliparse's main-content mode with everything that is not article prose switched off. Each option and each
# skipped selector was measured on the tune half of the html_extraction benchmark (see benchmarks/html_extraction.py):
# keeping comments, post meta (bylines, dates) or alt texts each cost about a point of F1 (precision, no recall).
_RESILIPARSE_OPTIONS = dict(
    main_content=True,
    preserve_formatting=True,
    comments=False,
    post_meta=False,
    alt_texts=False,
    list_bullets=False,
    links=False,
    form_fields=False,
    noscript=False,
)
# Page furniture resiliparse keeps inside the main block: the headline (kept apart, as `title`), captions,
# consent banners, footers, print links and newsletter boxes.
_SKIP_SELECTORS = [
    "h1",
    "header",
    "[class*=caption]",
    "[class*=consent]",
    "[class*=footer]",
    "[class*=print]",
    "[class*=newsletter]",
]
# trafilatura 2.3: fast=True skips its readability/jusText fallbacks, comments are not main content. Alone it
# favours recall (benchmark F1 0.960 vs 0.944 for its defaults, ~1.5x their speed). As the cascade's second
# opinion it favours precision: it only has to trim furniture out of the fast extract, and precision mode skips
# the recall escalation that re-reads the whole page (cascade F1 unchanged, ~4% more pages/s).
_TRAFILATURA_OPTIONS = {
    "alone": dict(fast=True, include_comments=False, favor_recall=True),
    "second_opinion": dict(fast=True, include_comments=False, favor_precision=True),
}

# A line is prose when it has at least this many words (or, in scripts written without spaces, characters).
_PROSE_WORDS = 6
_PROSE_NO_SPACE_CHARS = 12
_NO_SPACE_CHAR = re.compile(f"[{NO_SPACE_CLASS}]")
# Short lines carrying these phrases are page furniture, not text (English only: the phrases sites reuse most).
# Found with str.find on the lower-cased text: ~10x faster than one case-insensitive regex alternation.
_BOILERPLATE = (
    "advertisement", "subscribe", "sign up", "newsletter", "all rights reserved", "copyright", "follow us",
    "share this", "read more", "related articles", "related stories", "related posts", "click here", "loading",
    "we use cookies", "cookie policy", "cookie settings", "©",
)
_BOILERPLATE_MAX_WORDS = 30

# The cascade's "unsure" signal, computed on the fast extract:
# - fragmented: an article with furniture left in it. At least 30% of its lines are not prose (navigation, link
#   lists, captions, tweets inside the main block: 0.3 is the 90th percentile on the benchmark's tune half, a budget
#   of ~10% of pages for an extractor ~12x slower), yet prose lines carry at least 85% of its characters. Where
#   short lines carry more (shop pages, indexes, listings: most of the crawl WARCs in shared/data) there is no
#   article to refine and the slow call would be wasted: this cut 45 of 67 crawl pages routed to 9, and changed
#   no benchmark score.
# - thin: under this many characters while the page shows much more text, i.e. the main block was probably missed.
UNSURE_NON_PROSE_SHARE = 0.3
UNSURE_NON_PROSE_MAX_CHARS = 0.15
UNSURE_MIN_CHARS = 200
UNSURE_THIN_PAGE_CHARS = 1000
# The accurate extract replaces a fragmented fast one only when it is a refinement of it: most of its words are
# in the fast extract and it keeps at least half of it. Otherwise the two found different blocks, or the accurate
# one lost the article (both happen), and the fast extract stands.
_REFINE_MIN_SHARED = 0.9
_REFINE_MIN_LENGTH = 0.5

_UTF8_BYTES_PER_ERROR = 20
_ASCII = bytes(range(128))

_DATE_SELECTOR = ", ".join(
    [
        'meta[property="article:published_time"]',
        'meta[property="og:published_time"]',
        'meta[itemprop="datePublished"]',
        'meta[name="date"]',
        'meta[name="pubdate"]',
        'meta[name="publish-date"]',
        'meta[name="dc.date"]',
    ]
)


@dataclass(frozen=True)
class Extraction:
    """Main-content text of one page and how it was obtained."""

    text: str
    charset: str | None  # codec the bytes were decoded with; None when the input was already text
    extractor: str  # "resiliparse" or "trafilatura": which one produced `text`
    title: str | None = None
    date: str | None = None  # the page's own publication date from its <meta> tags, as written there
    unsure: str | None = None  # why the cascade consulted the accurate extractor ("fragmented", "thin"), else None


def decode_html(data: bytes, declared: str | None = None) -> tuple[str, str]:
    """(text, codec name). A BOM; then UTF-8, strictly or with a few stray bytes replaced; then, strictly, the
    declared (HTTP) charset, the page's <meta> charset, uchardet's guess; failing all, the first of those with
    undecodable bytes replaced."""
    for bom, codec in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            return bytes_to_str(data, codec, errors="replace", fallback_encodings=()), codec
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
    if _mostly_valid(data, text):
        return text, "utf-8"
    labels = (declared, detect_encoding(data, from_html_meta=True), detect_encoding(data))
    candidates = [name for name in dict.fromkeys(map(_codec, labels)) if name] or ["cp1252"]
    for codec in candidates:
        try:
            return data.decode(codec), codec
        except UnicodeDecodeError:
            continue
    # Nothing decodes cleanly: the declared charset (else the best guess) with replacements, as a browser would.
    return data.decode(candidates[0], errors="replace"), candidates[0]


def _mostly_valid(data: bytes, text: str) -> bool:
    """UTF-8 with at most one bad sequence per 20 non-ASCII bytes: a UTF-8 page with stray bytes. A legacy
    encoding read as UTF-8 breaks on nearly every non-ASCII byte."""
    bad = text.count("\ufffd")
    return bad * _UTF8_BYTES_PER_ERROR <= len(data.translate(None, _ASCII))


def _codec(label: str | None) -> str | None:
    """Python's codec for a charset label as browsers read it (WHATWG: "iso-8859-1" means cp1252, "gb2312" gbk),
    None when unknown."""
    name = map_encoding_to_html5(label.strip().strip("\"'"), fallback_utf8=False) if label else None
    try:
        return codecs.lookup(name).name if name else None
    except LookupError:
        return None


def extract_html(
    html: bytes | str, mode: Mode = "cascade", charset: str | None = None, url: str | None = None
) -> Extraction:
    """Main-content text of a page. `charset` is the declared one (e.g. from the HTTP header), `url` helps
    trafilatura. Raises ValueError for an unknown mode; parser errors propagate."""
    if mode not in MODES:
        raise ValueError(f"unknown HTML extraction mode {mode!r} (expected one of {', '.join(MODES)})")
    text, used = decode_html(html, charset) if isinstance(html, bytes) else (html, None)
    tree = HTMLTree.parse(text)
    title, date = _title(tree), _date(tree)
    if mode == "trafilatura":
        return Extraction(accurate_text(text, url, "alone"), used, "trafilatura", title, date)
    fast = fast_text(tree)
    reason = unsure_reason(fast, text) if mode == "cascade" else None
    if reason is None:
        return Extraction(fast, used, "resiliparse", title, date)
    try:
        slow = accurate_text(text, url, "second_opinion")
    except Exception as err:  # the fast extract stands: the slow one is only a second opinion
        logging.getLogger(__name__).debug("trafilatura failed on %s: %s", url, err)
        return Extraction(fast, used, "resiliparse", title, date, reason)
    if _prefer_accurate(fast, slow, reason):
        return Extraction(slow, used, "trafilatura", title, date, reason)
    return Extraction(fast, used, "resiliparse", title, date, reason)


def fast_text(tree: HTMLTree) -> str:
    """resiliparse's main content, then page furniture lines dropped and non-prose lines trimmed off both ends."""
    return clean_lines(extract_plain_text(tree, **_RESILIPARSE_OPTIONS, skip_elements=_SKIP_SELECTORS))


def accurate_text(text: str, url: str | None = None, role: Literal["alone", "second_opinion"] = "alone") -> str:
    return trafilatura.extract(text, url=url, **_TRAFILATURA_OPTIONS[role]) or ""


def is_prose(line: str) -> bool:
    """A sentence-like line rather than a label, link, byline or date."""
    if len(line.split()) >= _PROSE_WORDS:
        return True
    return len(_NO_SPACE_CHAR.findall(line)) >= _PROSE_NO_SPACE_CHARS


def clean_lines(text: str) -> str:
    """Drops short boilerplate lines anywhere and non-prose lines before the first / after the last prose line
    (headlines, bylines, share bars, "related" links); keeps paragraph breaks."""
    lines = [line.strip() for line in _without_boilerplate(text).split("\n")]
    first = next((i for i, line in enumerate(lines) if line and is_prose(line)), None)
    if first is not None:
        last = next(i for i in range(len(lines) - 1, first - 1, -1) if lines[i] and is_prose(lines[i]))
        lines = lines[first : last + 1]
    # At most one blank line between paragraphs (dropped lines leave blanks behind).
    kept = [line for i, line in enumerate(lines) if line or (i and lines[i - 1])]
    return "\n".join(kept).strip()


def _without_boilerplate(text: str) -> str:
    lines = {}  # start -> end of each line to drop
    for position in _boilerplate_positions(text):
        start = text.rfind("\n", 0, position) + 1
        if start not in lines:
            end = text.find("\n", position)
            end = len(text) if end < 0 else end
            if len(text[start:end].split()) < _BOILERPLATE_MAX_WORDS:
                lines[start] = end
    if not lines:
        return text
    kept, position = [], 0
    for start in sorted(lines):
        kept.append(text[position:start])
        position = lines[start]
    kept.append(text[position:])
    return "".join(kept)


def _boilerplate_positions(text: str) -> Iterator[int]:
    """Where a boilerplate phrase occurs as whole words (case-insensitive)."""
    lowered = text.lower()
    if len(lowered) != len(text):  # a few characters lower-case to two; offsets must stay aligned
        lowered = "".join(char.lower()[0] for char in text)
    for phrase in _BOILERPLATE:
        position = lowered.find(phrase)
        while position >= 0:
            end = position + len(phrase)
            if phrase == "©" or (
                (position == 0 or not lowered[position - 1].isalnum())
                and (end == len(lowered) or not lowered[end].isalnum())
            ):
                yield position
            position = lowered.find(phrase, end)


def unsure_reason(fast: str, html: str) -> str | None:
    """Why the fast extract may be wrong ("thin" / "fragmented"), None when it looks like an article."""
    if len(fast) < UNSURE_MIN_CHARS:
        # Only now pay for the page's full visible text: a short page is not a missed article. From a fresh
        # parse: resiliparse 2.0 can corrupt its heap when a tree is extracted from again after main-content
        # extraction (seen with tree.title read in between), so a tree serves one main-content extraction only.
        visible = extract_plain_text(html, preserve_formatting=False)
        return "thin" if len(visible) >= UNSURE_THIN_PAGE_CHARS else None
    lines = [line for line in fast.split("\n") if line]
    non_prose = [line for line in lines if not is_prose(line)]
    if len(non_prose) < UNSURE_NON_PROSE_SHARE * len(lines):
        return None
    furniture_chars = sum(map(len, non_prose))
    return "fragmented" if furniture_chars <= UNSURE_NON_PROSE_MAX_CHARS * sum(map(len, lines)) else None


def _prefer_accurate(fast: str, slow: str, reason: str) -> bool:
    if reason == "thin":
        return len(slow) > len(fast)
    if not slow or len(slow) > len(fast) or len(slow) < _REFINE_MIN_LENGTH * len(fast):
        return False
    slow_words, fast_words = Counter(slow.split()), Counter(fast.split())
    shared = sum((slow_words & fast_words).values())
    return shared >= _REFINE_MIN_SHARED * sum(slow_words.values())


def _title(tree: HTMLTree) -> str | None:
    title = " ".join(tree.title.split()) if tree.title else ""
    return title or None


def _date(tree: HTMLTree) -> str | None:
    if tree.head is None:
        return None
    meta = tree.head.query_selector(_DATE_SELECTOR)
    content = (meta.getattr("content") or "").strip() if meta is not None else ""
    return content or None
