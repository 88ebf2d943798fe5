"""C4's line filter and page rules (Raffel et al. 2020, section 2.2; tensorflow_datasets text/c4_utils.py); the
surviving lines stay on the Document, and the caller decides whether they replace the text."""

from __future__ import annotations

import re

from datafactory.filters.rules_base import Document, Rule, ratio
from datafactory.filters.segment import count_sentences
from datafactory.filters.text import words as cjk_aware_words

RULES = (
    Rule("c4_lorem_ipsum", "c4_lorem_ipsum", "max", "max_lorem_ipsum_lines"),
    Rule("c4_curly_bracket", "c4_curly_bracket", "max", "max_curly_bracket_lines"),
    Rule("c4_min_sentences", "c4_sentences", "min", "min_sentences"),
)

ELLIPSIS = "..."
CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
# Lines naming site policies are boilerplate (c4_utils.py's policy substrings).
POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")


def _line_words(line: str, spaced: bool) -> list[str]:
    """Whitespace words, as C4 counts them; for scripts without spaces each CJK character counts as a word
    (whitespace would make a whole Chinese line one "word")."""
    return line.split() if spaced else cjk_aware_words(line)


def filter_lines(doc: Document) -> tuple[list[str], int, int]:
    """(surviving lines, candidate lines with "lorem ipsum", with "{"); a line is checked in C4's order."""
    rules = doc.rules
    spaced = rules.word_split == "spaces"
    ends = tuple(rules.c4_end_punctuation)
    kept: list[str] = []
    lorem = curly = 0
    for raw in doc.lines:
        line = raw.strip()
        if not line:
            continue
        # C4 counts the words of the line as it was before citations are cut, but only after checking its
        # ending: splitting only lines that get that far saves most of the work on web text
        if len(line) > rules.c4_max_word_length and any(
            len(w) > rules.c4_max_word_length for w in _line_words(line, spaced)
        ):
            continue
        uncited = CITATION.sub("", line) if "[" in line else line
        if rules.c4_terminal_punct and (not uncited.endswith(ends) or uncited.endswith(ELLIPSIS)):
            continue
        if len(_line_words(line, spaced)) < rules.c4_min_words_per_line:
            continue
        line = uncited
        lower = line.lower()
        if "lorem ipsum" in lower:
            lorem += 1
            continue
        if "javascript" in lower:
            continue
        if "{" in line:
            curly += 1
            continue
        if any(phrase in lower for phrase in POLICY):
            continue
        kept.append(line)
    return kept, lorem, curly


def measure(doc: Document) -> dict[str, float]:
    kept, lorem, curly = filter_lines(doc)
    doc.kept_lines = kept
    return {
        "c4_sentences": float(count_sentences(kept, doc.rules.word_split)),
        "c4_lorem_ipsum": float(lorem),
        "c4_curly_bracket": float(curly),
        "c4_removed_lines_frac": ratio(len(doc.newline_lines) - len(kept), len(doc.newline_lines)),
    }
