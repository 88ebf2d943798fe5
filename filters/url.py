"""URL blocklist: drop documents whose host is a blocked domain (or under one) or whose URL holds a banned word."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from datafactory.factory.config import UrlFilterConfig

BLOCKED_DOMAIN = "url_blocked_domain"
BANNED_WORD = "url_banned_word"


def read_list(path: str | Path) -> list[str]:
    """Entries of a blocklist file: one per line, blank lines and `#` comments ignored."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"blocklist file not found: {path}") from None
    return [entry for line in lines if (entry := line.split("#", 1)[0].strip())]


def host_of(url: str) -> str:
    """Lower-cased host without port, credentials or a trailing dot; "" when the URL has none."""
    try:
        host = urlsplit(url.strip()).hostname or ""
    except ValueError:  # e.g. a malformed IPv6 literal
        return ""
    return host.rstrip(".")


def parent_domains(host: str) -> list[str]:
    """The host and every domain above it: "a.b.example.com" -> [a.b.example.com, b.example.com, example.com, com]."""
    parts = host.split(".")
    return [".".join(parts[i:]) for i in range(len(parts))]


@dataclass(frozen=True)
class UrlVerdict:
    keep: bool
    reason: str | None = None
    matched: str | None = None  # the domain or word that matched


class UrlFilter:
    """Blocks by domain (a blocked domain blocks all its subdomains) and by banned substrings of the URL."""

    def __init__(self, config: UrlFilterConfig, base_dir: str | Path = ".") -> None:
        """List files with relative paths resolve against base_dir (the config file's directory)."""

        def entries(paths: list[str]) -> list[str]:
            return [entry for path in paths for entry in read_list(Path(base_dir) / path)]

        domains = [*config.domains, *entries(config.domain_files)]
        words = [*config.banned_words, *entries(config.banned_word_files)]
        self.domains = frozenset(domain.lower().strip(".") for domain in domains)
        self.words = tuple(sorted({word.lower() for word in words}))

    @property
    def active(self) -> bool:
        return bool(self.domains or self.words)

    def check(self, url: str | None) -> UrlVerdict:
        """Documents without a URL are kept: the blocklist can only judge what it can see."""
        if not url or not self.active:
            return UrlVerdict(True)
        host = host_of(url)
        for domain in parent_domains(host) if host else []:
            if domain in self.domains:
                return UrlVerdict(False, BLOCKED_DOMAIN, domain)
        # Words are matched in the decoded URL so "casino" also catches "%63asino"-style escapes.
        haystack = unquote(url).lower()
        for word in self.words:
            if word in haystack:
                return UrlVerdict(False, BANNED_WORD, word)
        return UrlVerdict(True)
