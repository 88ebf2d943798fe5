"""Word splitting for the heuristic rules: spaCy-compatible splitting of space-delimited text, jieba for Chinese,
single characters for Japanese; each whitespace chunk is split once per process and its counts cached.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Literal

import regex
import rjieba

from datafactory.filters.text import words_and_marks

WordSplit = Literal["spaces", "jieba", "chars"]

# Punctuation-only tokens are not words (Gopher counts and averages words): ASCII punctuation, sentence
# terminals, typographic quotes and dashes, CJK punctuation and control characters.
_STERM = regex.compile(r"\p{Sentence_Terminal}")
SENTENCE_TERMINALS = frozenset(_STERM.findall("".join(map(chr, range(0x110000)))))
SYMBOLS = frozenset(
    string.punctuation
    + "“”„’´«»–—…、，：；（）【】「」《》〈〉～％━►∶１"
    + "".join(map(chr, [*range(0, 9), *range(11, 32), *range(127, 160)]))
) | SENTENCE_TERMINALS

# --- spaCy-compatible splitting of one whitespace chunk ------------------------------------------------
# Rules of spaCy's English tokenizer (prefixes, suffixes, infixes, URL match, special cases), so word counts
# agree with datatrove, whose Gopher/C4/FineWeb filters count spaCy tokens.

_QUOTES = "'\"”“`‘´’‚,„»«「」『』（）〔〕【】《》〈〉⟦⟧"
_PUNCT = "…,:;!?¿؟¡()[]{}<>_#*&。？！，、；：～·।،۔؛٪"
_CURRENCY = "$£€¥฿₽﷼₴₠-₿"
_UNITS = (
    "km|km²|km³|m|m²|m³|dm|dm²|dm³|cm|cm²|cm³|mm|mm²|mm³|ha|µm|nm|yd|in|ft|kg|g|mg|µg|t|lb|oz|m/s|km/h|kmh|mph|"
    "hPa|Pa|mbar|mb|MB|kb|KB|gb|GB|tb|TB|T|G|M|K|%"
)
_LOWER = r"\p{Ll}\p{Lo}"  # scripts without case count as both lower and upper, as in spaCy
_UPPER = r"\p{Lu}\p{Lo}"


def _chars(chars: str) -> str:
    return "".join("\\" + c if c in "\\]^-[" else c for c in chars)


_PQ = _chars(_PUNCT + _QUOTES)
_PREFIX = regex.compile(
    rf"(?:[§%=—–]|\+(?![0-9])|……|\.\.+|[{_PQ}]|US\$|C\$|A\$|[{_CURRENCY}]|\p{{So}})"
)
_SUFFIX = regex.compile(
    rf"(?:……|\.\.+|[{_PQ}]|\p{{So}}|['’][sS]|[—–]|(?<=[0-9])\+|(?<=°[FfCcKk])\.|(?<=[0-9])[{_CURRENCY}]"
    rf"|(?<=[0-9])(?:{_UNITS})|(?<=[0-9{_LOWER}%²\-+{_PQ}])\.|(?<=[{_UPPER}][{_UPPER}])\.)$"
)
_INFIX = regex.compile(
    rf"\.\.+|…|\p{{So}}|(?<=[0-9])[+\-*^](?=[0-9-])|(?<=[{_LOWER}{_chars(_QUOTES)}])\.(?=[{_UPPER}{_chars(_QUOTES)}])"
    r"|(?<=\p{L}),(?=\p{L})|(?<=[\p{L}0-9])(?:---|--|——|[-–—~])(?=\p{L})|(?<=[\p{L}0-9])[:<>=/](?=\p{L})"
)
_INFIX_CHARS = regex.compile(r"[.…,\-–—~:<>=/+*^\p{So}]")  # a core without any of these has no infix
_URL = regex.compile(
    r"(?:[\w+\-.]{2,}://)?(?:\S+(?::\S*)?@)?"
    r"(?:[\p{L}\p{N}][\p{L}\p{N}_-]{0,62}\.|[\p{L}\p{N}]\.)+\p{Ll}{2,63}(?::\d{2,5})?(?:[/?#]\S*)?"
)
_CONTRACTION = regex.compile(r"(\p{L}+?)(n['’]t|['’](?:re|ve|ll|d|m))")
# Words spaCy splits "'re", "'ve", "'ll", "'d", "'m" from ("we're"); "n't" comes off any word ("isn't").
_CONTRACTED = frozenset(
    "i you he she it we they that there what who where when why how this these those could would should might must"
    .split()
)
_ABBREVIATIONS = (
    "Mr. Mrs. Ms. Dr. Prof. St. Mt. Jr. Sr. Inc. Ltd. Co. co. Corp. Bros. Messrs. Gen. Gov. Sen. Rep. Rev. Adm. "
    "vs. v.s. Jan. Feb. Mar. Apr. Jun. Jul. Aug. Sep. Sept. Oct. Nov. Dec. e.g. E.g. E.G. i.e. I.e. I.E. a.m. "
    "p.m. Ph.D. Ala. Ariz. Ark. Calif. Colo. Conn. Del. Fla. Ga. Ill. Ind. Kan. Ky. La. Mass. Md. Mich. Minn. "
    "Miss. Mo. Mont. Neb. Nev. Okla. Ore. Pa. Tenn. Va. Wash. Wis. D.C. N.Y. N.J. N.C. N.H. S.C. ä. ö. ü. "
    + " ".join(f"{c}." for c in string.ascii_lowercase)
)
_EMOTICONS = ":) :( ;) :-) :-( ;-) :P :p :D :/ :] :| :* ): (: [: 8) <3 =) (= ^_^ -_- '' ’’ C++ and/or"
# Chunks spaCy splits without an apostrophe ("cannot" -> "can", "not"; "dont" -> "do", "nt"; "6pm" -> "6", "pm").
_FUSED = {
    "cannot": ("can", "not"), "gonna": ("gon", "na"), "gotta": ("got", "ta"), "cant": ("ca", "nt"),
    "wont": ("wo", "nt"), "aint": ("ai", "nt"),
    **{f"{verb}nt": (verb, "nt") for verb in "do does did is are was were have has had could would should".split()},
    **{f"{pronoun}{tail}": (pronoun, tail) for pronoun, tails in (
        ("i", "m ve d"), ("you", "re ve ll d"), ("we", "ve d"), ("they", "re ve ll d"), ("he", "s d"), ("she", "s"),
        ("it", "ll d"), ("that", "s ll d"), ("what", "s re ve ll d"), ("there", "s re ve ll d"), ("who", "s ve ll d"),
    ) for tail in tails.split()},
}
_CLOCK = {f"{hour}{half}": (str(hour), half) for hour in range(1, 13) for half in ("am", "pm", "a.m.", "p.m.")}
SPECIAL: dict[str, tuple[str, ...]] = {
    **{word: (word,) for word in (_ABBREVIATIONS + " " + _EMOTICONS).split()},
    **_FUSED,
    **{word.capitalize(): (parts[0].capitalize(), *parts[1:]) for word, parts in _FUSED.items()},
    **_CLOCK,
}


_PLAIN_SUFFIXES = frozenset(",:;!?)]}\"'”’»")  # split off the end of a word whatever precedes them
_PLAIN_PREFIXES = frozenset("([\"'“‘«„")
_SUFFIX_WINDOW = 6  # longest suffix other than a run of dots ("km/h", "mbar")


def _suffix_length(rest: str, pre: int) -> int:
    if rest.endswith(".."):
        return len(rest) - len(rest.rstrip("."))
    match = _SUFFIX.search(rest, max(pre, len(rest) - _SUFFIX_WINDOW))
    return len(rest) - match.start() if match else 0


def _strip_affixes(chunk: str) -> tuple[list[str], str, list[str]]:
    """Peels prefixes and suffixes off ``chunk`` until a special case or nothing more comes off."""
    prefixes: list[str] = []
    suffixes: list[str] = []
    rest = chunk
    while rest and rest not in SPECIAL:
        match = _PREFIX.match(rest)
        pre = match.end() if match else 0
        if pre and rest[pre:] in SPECIAL:
            prefixes.append(rest[:pre])
            return prefixes, rest[pre:], suffixes
        suf = _suffix_length(rest, pre)
        if suf and rest[:-suf] in SPECIAL:
            suffixes.append(rest[-suf:])
            return prefixes, rest[:-suf], suffixes
        if pre and suf and pre + suf <= len(rest):
            prefixes.append(rest[:pre])
            suffixes.append(rest[-suf:])
            rest = rest[pre:-suf]
        elif pre:
            prefixes.append(rest[:pre])
            rest = rest[pre:]
        elif suf:
            suffixes.append(rest[-suf:])
            rest = rest[:-suf]
        else:
            break
    return prefixes, rest, suffixes


def _split_infixes(core: str) -> list[str]:
    """Splits the core of a chunk at infixes (hyphens between letters, "a/b", "lower.Upper", ...)."""
    if core in SPECIAL:
        return list(SPECIAL[core])
    if "'" in core or "’" in core:
        contraction = _CONTRACTION.fullmatch(core)
        if contraction:
            stem, tail = contraction.groups()
            if tail[0] == "n" or (stem.lower() in _CONTRACTED and (stem.islower() or stem.istitle())):
                return [stem, tail]
    if not _INFIX_CHARS.search(core, 1):
        return [core]
    matches = [match for match in _INFIX.finditer(core) if match.start() > 0]  # one at the very start stays
    if not matches or ("." in core and _URL.fullmatch(core)):
        return [core]
    pieces: list[str] = []
    start = 0
    for match in matches:
        if match.start() > start:
            pieces.append(core[start : match.start()])
        pieces.append(match.group())
        start = match.end()
    if start < len(core):
        pieces.append(core[start:])
    return pieces


_LONGEST_SPECIAL = max(map(len, SPECIAL))
# Last characters of the special cases that contain punctuation: only a token list holding one of them can spell
# one of those across several tokens.
_SPECIAL_TAILS = frozenset(key[-1] for key in SPECIAL if not key.isalnum())


def _apply_specials(tokens: list[str]) -> tuple[str, ...]:
    """Re-joins runs of tokens that spell a special case ("D-Calif." -> "D", "-", "Calif."), as spaCy does."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        for j in range(len(tokens), i + 1, -1):
            joined = "".join(tokens[i:j])
            if len(joined) <= _LONGEST_SPECIAL and joined in SPECIAL:
                out.extend(SPECIAL[joined])
                i = j
                break
        else:
            out.append(tokens[i])
            i += 1
    return tuple(out)


def _word_pieces(core: str) -> tuple[str, ...] | None:
    """A word or a number as one token, words joined by hyphens split at them ("well-known"); None otherwise."""
    if core.isalpha() or core.isdigit():
        return (core,)
    words = core.split("-")
    if len(words) < 2 or not all(map(str.isalpha, words)):
        return None
    pieces = [words[0]]
    for word in words[1:]:
        pieces += ("-", word)
    return tuple(pieces)


def _split_simple(chunk: str) -> tuple[str, ...] | None:
    """The common shapes without regular expressions: a word, number or hyphenated word with at most one opening
    and one closing mark ("(word", "word,", "well-known."); None for anything else."""
    lead = (chunk[0],) if chunk[0] in _PLAIN_PREFIXES else ()
    body = chunk[len(lead) :]
    if not body or body in SPECIAL:
        return None
    core, last = body[:-1], body[-1]
    if last == ".":
        word = core.rpartition("-")[2]
        if not (word.isascii() and word.isalpha()) or word + "." in SPECIAL:
            return None
        # spaCy splits the dot after a lowercase letter or two capitals; "J." stays one token
        if not (word[-1].islower() or (len(word) > 1 and word[-2:].isupper())):
            return (*lead, body) if word == core else None
        tail: tuple[str, ...] = (last,)
    elif last in _PLAIN_SUFFIXES:
        tail = (last,)
    else:
        core, tail = body, ()
    pieces = _word_pieces(core) if core and core not in SPECIAL else None
    return (*lead, *pieces, *tail) if pieces else None


def split_chunk(chunk: str) -> tuple[str, ...]:
    """Tokens of one whitespace-free chunk, split the way spaCy's English tokenizer splits it."""
    if chunk in SPECIAL:
        return SPECIAL[chunk]
    if chunk.isalpha() or chunk.isdigit():
        return (chunk,)
    simple = _split_simple(chunk)
    if simple:
        return simple
    prefixes, core, suffixes = _strip_affixes(chunk)
    tokens = [*prefixes, *(_split_infixes(core) if core else []), *reversed(suffixes)]
    if len(tokens) > 1 and any(token[-1] in _SPECIAL_TAILS for token in tokens[1:]):
        return _apply_specials(tokens)
    return tuple(tokens)


# --- counts ---------------------------------------------------------------------------------------------
# Per token, the counts a document sums are packed into one int (32 bits each: tokens, words, word characters,
# alphabetic tokens), so a document's totals are one C-level sum over its chunks.

_WORD, _CHARS, _ALPHA = 1 << 32, 1 << 64, 1 << 96
_MASK = (1 << 32) - 1


def _token_counts(token: str) -> int:
    if token.isalpha():
        return 1 + _WORD + len(token) * _CHARS + _ALPHA
    packed = 1 if SYMBOLS.issuperset(token) else 1 + _WORD + len(token) * _CHARS
    return packed + _ALPHA if any(c.isalpha() for c in token) else packed


class _Cache(dict):
    """Key -> value computed on first use; cleared when it grows past ``limit`` entries."""

    def __init__(self, compute: Callable[[str], object], limit: int = 500_000) -> None:
        super().__init__()
        self.compute, self.limit = compute, limit

    def __missing__(self, key: str) -> object:
        if len(self) >= self.limit:
            self.clear()
        value = self[key] = self.compute(key)
        return value


_TOKENS = _Cache(_token_counts)


def _sentence_class(token: str) -> str:
    """"P" for a sentence terminal, "p" for other punctuation, "w" for anything else (spaCy's sentencizer)."""
    if token.isalnum():
        return "w"
    if token in SENTENCE_TERMINALS:
        return "P"
    return "p" if all(unicodedata.category(c).startswith("P") for c in token) else "w"


_CLASSES = _Cache(_sentence_class)


def _chunk_entry(chunk: str) -> tuple[tuple[str, ...], int, str]:
    """(tokens, their packed counts, their sentence classes); a plain word (half of all chunks) directly."""
    if chunk.isalpha() and chunk not in SPECIAL:
        return (chunk,), 1 + _WORD + len(chunk) * _CHARS + _ALPHA, "w"
    tokens = split_chunk(chunk)
    return tokens, sum(map(_TOKENS.__getitem__, tokens)), "".join(map(_CLASSES.__getitem__, tokens))


_CHUNKS = _Cache(_chunk_entry)
_first, _second, _third = itemgetter(0), itemgetter(1), itemgetter(2)


@dataclass(frozen=True, slots=True)
class Words:
    """A document's tokens (punctuation included, as spaCy yields them) and their counts."""

    tokens: list[str]
    n_tokens: int
    n_words: int  # tokens that are not punctuation only
    word_chars: int
    n_alpha: int  # tokens holding a letter

    @classmethod
    def from_packed(cls, tokens: list[str], packed: int) -> Words:
        return cls(tokens, packed & _MASK, packed >> 32 & _MASK, packed >> 64 & _MASK, packed >> 96)

    @property
    def mean_word_length(self) -> float:
        return self.word_chars / self.n_words if self.n_words else 0.0


# jieba's words, cut by rjieba (jieba-rs: the same dictionary and algorithm in Rust, ~11x faster here). The two differ
# only on runs without Han characters: jieba's HMM pass splits those on its `re_skip` pattern (so "64-66" and
# "example.com" are three words, "2.1" and "100%" one), which rjieba leaves whole; the same split is applied here.
# On the web sample's 2,319 Chinese documents this gives jieba's exact tokens for 2,318 (the other: "C++").
_HAN = re.compile("[\u4E00-\u9FD5]")
_JIEBA_SKIP = re.compile(r"([a-zA-Z0-9]+(?:\.\d+)?%?)")


def _jieba_tokens(text: str) -> list[str]:
    tokens = []
    for raw in rjieba.cut(text):
        token = raw.strip()
        if len(token) > 1 and not _HAN.search(token):
            tokens += [piece.strip() for piece in _JIEBA_SKIP.split(token) if piece.strip()]
        elif token:
            tokens.append(token)
    return tokens


def split_words(text: str, mode: WordSplit = "spaces") -> Words:
    """Tokens of ``text``: spaCy-style for "spaces", jieba words for "jieba", CJK characters for "chars"."""
    if mode == "spaces":
        entries = list(map(_CHUNKS.__getitem__, text.split()))
        return Words.from_packed(list(chain.from_iterable(map(_first, entries))), sum(map(_second, entries)))
    tokens = _jieba_tokens(text) if mode == "jieba" else words_and_marks(text)
    return Words.from_packed(tokens, sum(map(_TOKENS.__getitem__, tokens)))


# spaCy's sentencizer starts a sentence at the first word after a terminal mark ("P"), any other punctuation
# ("p") in between; datatrove's C4 filter counts sentences with it.
_BOUNDARY = re.compile("P[Pp]*w")


def _line_classes(line: str, mode: WordSplit) -> str:
    if mode == "spaces":
        return "".join(map(_third, map(_CHUNKS.__getitem__, line.split())))
    # Chinese lines by character: a sentence mark is one character anyway, and word splitting per line costs more
    return "".join(map(_CLASSES.__getitem__, words_and_marks(line)))


def count_sentences(lines: list[str], mode: WordSplit = "spaces") -> int:
    """Sentences over ``lines``, each line on its own (so at least one per non-empty line)."""
    classes = "|".join(_line_classes(line, mode) for line in lines)
    return len(lines) + len(_BOUNDARY.findall(classes))


def clear_caches() -> None:
    """Forgets every chunk split so far (benchmarks time from cold)."""
    for cache in (_CHUNKS, _TOKENS, _CLASSES):
        cache.clear()
