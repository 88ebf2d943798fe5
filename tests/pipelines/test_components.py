"""Connected components by large-star / small-star rounds agree with a union-find on random graphs."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterable

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from datafactory.factory.config import RunnerConfig
from datafactory.pipelines.common import beam_options
from datafactory.pipelines.components import StarRounds, both_ways, large_star, not_a_star, roles, small_star

Edge = tuple[str, str]


def union_find_labels(edges: list[Edge]) -> dict[str, str]:
    parent: dict[str, str] = {}

    def find(node: str) -> str:
        while parent.setdefault(node, node) != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for a, b in edges:
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)
    return {node: find(node) for node in parent}


def group(pairs: Iterable[tuple[str, str | None]]) -> dict[str, list]:
    grouped: dict[str, list] = defaultdict(list)
    for key, value in pairs:
        grouped[key].append(value)
    return grouped


def apply(step: Callable, pairs: Iterable[Edge]) -> list[Edge]:
    return [edge for element in group(pairs).items() for edge in step(element)]


def one_round(edges: list[Edge]) -> list[Edge]:
    """What StarRounds does per round, with dicts standing in for GroupByKey."""
    larger = apply(large_star, (pair for edge in edges for pair in both_ways(edge)))
    return sorted(set(apply(small_star, larger)))


def violations(edges: list[Edge]) -> int:
    return sum(not_a_star(element) for element in group(pair for edge in edges for pair in roles(edge)).items())


def random_graph(rng: random.Random, shape: str) -> list[Edge]:
    nodes = [f"n{rng.randrange(10**6):06d}" for _ in range(rng.randint(2, 120))]
    if shape == "path":
        pairs = list(zip(nodes, nodes[1:], strict=False))
    elif shape == "star":
        pairs = [(nodes[0], node) for node in nodes[1:]]
    else:
        pairs = [(rng.choice(nodes), rng.choice(nodes)) for _ in range(len(nodes))]
    return [(max(a, b), min(a, b)) for a, b in pairs if a != b]


@pytest.mark.parametrize("shape", ["path", "star", "random"])
def test_rounds_reach_union_find_components(shape: str) -> None:
    rng = random.Random(shape)
    for _ in range(60):
        edges = random_graph(rng, shape)
        if not edges:
            continue
        expected = {(node, root) for node, root in union_find_labels(edges).items() if node != root}
        rounds = 0
        while violations(edges):
            edges = one_round(edges)
            rounds += 1
            assert rounds <= 20
        assert set(edges) == expected


def test_stars_are_a_fixed_point_and_chains_are_not() -> None:
    star = [("b", "a"), ("c", "a"), ("d", "a")]
    assert violations(star) == 0 and one_round(star) == star
    assert violations([("c", "b"), ("b", "a")]) == 1  # b is a child and a parent
    assert violations([("c", "a"), ("c", "b")]) == 1  # c has two parents


def test_star_rounds_transform_in_beam() -> None:
    rng = random.Random(7)
    edges = [edge for _ in range(5) for edge in random_graph(rng, "random")]
    labels = union_find_labels(edges)
    expected = [(node, root) for node, root in labels.items() if node != root]
    options = beam_options(RunnerConfig(direct_running_mode="in_memory"))
    with beam.Pipeline(options=options) as pipeline:
        result = pipeline | beam.Create(edges) | StarRounds(12)
        assert_that(result, equal_to(expected))
