"""Text as it is stored: lone surrogates and NUL characters cleaned from input strings."""

from __future__ import annotations


def clean_text(text: str) -> str:
    """Lone surrogates (from JSON escapes) become U+FFFD so the text can be stored as UTF-8; NUL characters go
    (never meant as text, and C-string tools downstream would cut the document at them)."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def as_optional_str(value: object) -> str | None:
    return None if value is None else clean_text(str(value))
