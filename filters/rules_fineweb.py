"""FineWeb's custom line rules (Penedo et al. 2024, "The FineWeb Datasets"), measured as datatrove's
fineweb_quality_filter.py measures them."""

from __future__ import annotations

from datafactory.filters.rules_base import Document, Rule, duplicates, ratio
from datafactory.filters.segment import SENTENCE_TERMINALS

RULES = (
    Rule("fineweb_line_punct_ratio", "line_punct_ratio", "min", "min_line_punct_ratio"),
    Rule("fineweb_short_line_ratio", "short_line_ratio", "max", "max_short_line_ratio"),
    Rule("fineweb_char_dup_ratio", "char_dup_ratio", "max", "max_char_dup_ratio"),
    Rule("fineweb_list_ratio", "list_ratio", "max", "max_list_ratio"),
)


def measure(doc: Document) -> dict[str, float]:
    """Over non-blank lines (unstripped, as FineWeb reads them): share ending in a sentence terminal (any script),
    share of short lines, characters in repeated lines; and newlines per token (lists, menus)."""
    lines = doc.newline_lines
    short = doc.rules.short_line_length
    newlines = doc.text.count("\n")
    return {
        "line_punct_ratio": ratio(sum(1 for line in lines if line[-1] in SENTENCE_TERMINALS), len(lines)),
        "short_line_ratio": ratio(sum(1 for line in lines if len(line) <= short), len(lines)),
        "char_dup_ratio": ratio(duplicates(lines)[1], len(doc.text) - newlines),
        "list_ratio": ratio(newlines, doc.words.n_tokens),
    }
