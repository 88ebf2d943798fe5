"""PII redaction: e-mail addresses and IP addresses in document text replaced with fixed placeholders."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import regex

from datafactory.factory.config import PiiConfig

# Local part and domain per RFC 5322's common subset; the domain needs a dot and a 2+ letter top level,
# so "user@localhost" and "a@b" (code, handles) are left alone.
_EMAIL = regex.compile(
    r"(?<![\w.+-])[\w.+-]+@(?:[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?\.)+\p{L}{2,}(?![\w-])"
)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = regex.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.\d)")
# Candidate IPv6 literals (hex groups and colons, optional embedded IPv4); ipaddress decides which are real.
_IPV6_CANDIDATE = regex.compile(
    r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])"
)


def replace_emails(text: str, placeholder: str) -> tuple[str, int]:
    """``_EMAIL.subn`` over only the whitespace-delimited tokens that hold an "@": an address holds no whitespace and
    its look-arounds never match it, so the result is the same, at ~30x the speed on web text (the regex tried a
    match at every word start; this was most of ingest's time)."""
    pieces, last, count = [], 0, 0
    at = text.find("@")
    while at != -1:
        start, end = at, at + 1
        while start and not text[start - 1].isspace():
            start -= 1
        while end < len(text) and not text[end].isspace():
            end += 1
        token, found = _EMAIL.subn(placeholder, text[start:end])
        pieces += [text[last:start], token]
        last, count = end, count + found
        at = text.find("@", end)
    pieces.append(text[last:])
    return "".join(pieces), count


@dataclass(frozen=True)
class Redaction:
    text: str
    emails: int
    ips: int


def _is_ipv6(candidate: str) -> bool:
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


class PiiRedactor:
    """Replaces e-mail and IP addresses; counts what it replaced so the stage can report it."""

    def __init__(self, config: PiiConfig) -> None:
        self.config = config

    def redact(self, text: str) -> Redaction:
        if not self.config.enabled or ("@" not in text and "." not in text and ":" not in text):
            return Redaction(text, 0, 0)
        text, emails = replace_emails(text, self.config.email_placeholder)
        text, ipv4 = _IPV4.subn(self.config.ip_placeholder, text)
        ipv6 = 0
        if "::" in text or text.count(":") >= 7:

            def replace(match: regex.Match) -> str:
                nonlocal ipv6
                if not _is_ipv6(match.group()):
                    return match.group()
                ipv6 += 1
                return self.config.ip_placeholder

            text = _IPV6_CANDIDATE.sub(replace, text)
        return Redaction(text, emails, ipv4 + ipv6)
