"""Tokens, window hashes, winnowing's guarantee and span removal of the exact-substring step."""

from __future__ import annotations

import random

import pytest

from datafactory.filters.substrings import Claim, Hashed, Winnowing, remove_claimed


def words(rng: random.Random, count: int) -> str:
    return " ".join("".join(rng.choice("abcdefghij") for _ in range(5)) for _ in range(count))


def test_tokens_are_words_and_single_cjk_characters():
    text = "ab中cd  e,f\u3000g\n\nhi"
    hashed = Hashed.of(text)
    assert [text[start:end] for start, end in zip(hashed.starts, hashed.ends, strict=True)] == [
        "ab", "中", "cd", "e,f", "g", "hi"]


def test_equal_windows_hash_equal_wherever_they_sit_and_others_do_not():
    rng = random.Random(0)
    span = words(rng, 12)
    first, second = Hashed.of(f"{words(rng, 7)} {span} x"), Hashed.of(f"{span} {words(rng, 30)}")
    high, low = first.windows(12)
    other_high, other_low = second.windows(12)
    assert (high[7], low[7]) == (other_high[0], other_low[0])
    assert len(set(zip(high.tolist(), low.tolist(), strict=True))) == len(high)
    assert len(set(high.tolist()) & set(other_high.tolist())) == 1


def test_whitespace_inside_a_window_is_part_of_its_text():
    assert Hashed.of("alpha beta gamma").windows(3)[0] != Hashed.of("alpha  beta gamma").windows(3)[0]


@pytest.mark.parametrize("min_tokens", [10, 25, 50])
def test_a_span_of_min_tokens_always_shares_a_fingerprint(min_tokens):
    winnowing = Winnowing(min_tokens)
    for seed in range(30):
        rng = random.Random(seed)
        span = words(rng, min_tokens)
        first = f"{words(rng, rng.randrange(0, 80))} {span} {words(rng, rng.randrange(0, 80))}".strip()
        second = f"{words(rng, rng.randrange(0, 80))} {span} {words(rng, rng.randrange(0, 80))}".strip()
        keys = {key for key, _ in winnowing.fingerprints(first)}
        assert keys & {key for key, _ in winnowing.fingerprints(second)}, seed


def test_fingerprints_are_a_small_share_of_the_tokens():
    text = words(random.Random(1), 5000)
    assert 0.04 < len(Winnowing(50).fingerprints(text)) / 5000 < 0.11


def test_documents_shorter_than_min_tokens_have_no_fingerprints():
    assert Winnowing(50).fingerprints(words(random.Random(2), 49)) == []


def claims_between(winnowing: Winnowing, kept: str, other: str) -> list[Claim]:
    """What the stage computes for two documents, done by hand: the windows of `other`'s candidate regions that
    `kept`'s regions also hold."""
    kept_keys = dict(winnowing.fingerprints(kept))
    other_keys = winnowing.fingerprints(other)
    shared_other = [position for key, position in other_keys if key in kept_keys]
    shared_kept = [kept_keys[key] for key, _ in other_keys if key in kept_keys]
    kept_windows = {key: start for key, _, start in winnowing.region_windows(kept, shared_kept)}
    return [Claim(position, "kept", kept_windows[key]) for key, position, _ in winnowing.region_windows(
        other, shared_other) if key in kept_windows]


def test_the_whole_repeated_span_is_removed_and_nothing_else():
    rng = random.Random(3)
    winnowing = Winnowing(50)
    span = words(rng, 73)
    kept = f"{words(rng, 40)} {span} {words(rng, 40)}"
    other_head = words(rng, 61)
    other = f"{other_head} {span} {words(rng, 20)}"
    removal = remove_claimed(other, claims_between(winnowing, kept, other), 50, 3)
    assert [(span_.start, span_.end, span_.tokens) for span_ in removal.spans] == [
        (len(other_head) + 1, len(other_head) + 1 + len(span), 73)]
    assert removal.spans[0].kept_start == kept.index(span)
    assert removal.text == other.replace(span, "")
    assert removal.tokens_left == 81


def test_a_span_one_token_short_stays():
    rng = random.Random(4)
    span = words(rng, 49)
    kept, other = f"{words(rng, 30)} {span} {words(rng, 30)}", f"{words(rng, 30)} {span} {words(rng, 30)}"
    assert claims_between(Winnowing(50), kept, other) == []


def test_removals_a_few_tokens_apart_merge_and_further_ones_do_not():
    text = words(random.Random(5), 300)
    claims = [Claim(10, "a", 0), Claim(62, "a", 0), Claim(200, "b", 5)]  # windows [10, 60), [62, 112), [200, 250)
    merged = remove_claimed(text, claims, 50, 3)
    assert [(span.tokens, span.kept_in) for span in merged.spans] == [(102, "a"), (50, "b")]
    apart = remove_claimed(text, claims, 50, 1)
    assert [span.tokens for span in apart.spans] == [50, 50, 50]
