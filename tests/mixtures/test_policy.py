"""Policy files: the shipped examples load, default.yaml is the default, and bad policies say what to change."""

from pathlib import Path

import pytest
from support.builds import POLICIES

from datafactory.factory.config import ConfigError
from datafactory.mixtures.policy import Policy, load_policy


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_default_yaml_documents_exactly_the_defaults():
    assert load_policy(POLICIES / "default.yaml") == Policy() == load_policy(None)


@pytest.mark.parametrize("name", sorted(path.name for path in POLICIES.glob("*.yaml")))
def test_every_shipped_policy_loads(name):
    assert isinstance(load_policy(POLICIES / name), Policy)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stable: {targets: {web: 0.7, news: 0.6}}", "targets sum to 1.3, so the weights cannot sum to one"),
        ("stable: {targets: {web: 0}}", r"shares of the phase's tokens in \(0, 1\]"),
        ("stable: {method: unimax, temperature: 2}", "set method: temperature or remove temperature"),
        ("anneal: {buckets: [high, mid]}", r"\['mid'\] are in both anneal.buckets and anneal.rest_buckets"),
        ("anneal: {buckets: [top]}", "anneal.buckets.0: Input should be 'high', 'mid' or 'low'"),
        ("warmup_fraction: 0.5\nanneal_fraction: 0.5", "must leave room for the stable phase"),
        ("max_epoch: 4", "max_epoch: Extra inputs are not permitted"),
        ("- 1", "expected a mapping of policy keys"),
    ],
)
def test_bad_policies_are_rejected_with_what_to_change(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_policy(write(tmp_path, text))


def test_missing_policy_file():
    with pytest.raises(ConfigError, match="policy file not found"):
        load_policy("/nonexistent/policy.yaml")
