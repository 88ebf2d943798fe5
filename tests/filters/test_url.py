"""URL blocklist: domains block their subdomains, banned words match the decoded URL, files resolve by base dir."""

import pytest

from datafactory.factory.config import UrlFilterConfig
from datafactory.filters.url import BANNED_WORD, BLOCKED_DOMAIN, UrlFilter, host_of


def test_domain_blocks_itself_and_subdomains_only():
    rules = UrlFilter(UrlFilterConfig(domains=["casino.example", "Spam.Test."]))
    assert rules.check("https://casino.example/page").reason == BLOCKED_DOMAIN
    assert rules.check("http://www.m.casino.example:8080/x?y=1").matched == "casino.example"
    assert rules.check("https://spam.test/").reason == BLOCKED_DOMAIN
    assert rules.check("https://notcasino.example/").keep
    assert rules.check("https://casino.example.org/").keep


def test_banned_words_match_decoded_lowercase_url():
    rules = UrlFilter(UrlFilterConfig(banned_words=["Porn", "casino"]))
    verdict = rules.check("https://example.com/free-PORN-videos")
    assert (verdict.keep, verdict.reason, verdict.matched) == (False, BANNED_WORD, "porn")
    assert rules.check("https://example.com/%63asino").reason == BANNED_WORD
    assert rules.check("https://example.com/recipes").keep


def test_documents_without_url_or_rules_are_kept():
    assert UrlFilter(UrlFilterConfig(domains=["a.example"])).check(None).keep
    assert UrlFilter(UrlFilterConfig()).check("https://anything.example/").keep
    assert not UrlFilter(UrlFilterConfig()).active


def test_list_files_resolve_against_base_dir(tmp_path):
    (tmp_path / "domains.txt").write_text("# blocked\nbad.example  # spam farm\n\nworse.example\n")
    rules = UrlFilter(UrlFilterConfig(domain_files=["domains.txt"]), base_dir=tmp_path)
    assert rules.domains == {"bad.example", "worse.example"}
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        UrlFilter(UrlFilterConfig(banned_word_files=["missing.txt"]), base_dir=tmp_path)


def test_host_of_odd_urls():
    assert host_of("HTTPS://User:pw@WWW.Example.COM.:443/a") == "www.example.com"
    assert host_of("not a url") == ""
    assert host_of("http://[::1") == ""
