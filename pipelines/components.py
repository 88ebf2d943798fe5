"""Connected components of the duplicate graph, as Beam GroupByKeys only: alternating large-star and small-star
rounds (Kiveris et al. 2014) turn every cluster into a star around its smallest node; no process holds every edge.
Edges are saved between pipelines with a count of nodes that are not yet part of a star."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq

from datafactory.factory.atomic import write_text_atomic
from datafactory.pipelines.common import SumAlways, parquet_rows, part_name, partition_of, write_parquet_atomic

Edge = tuple[str, str]  # (child, parent) with parent < child
EDGE_SCHEMA = pa.schema([("child", pa.string()), ("parent", pa.string())])
ROUNDS_PER_PIPELINE = 3  # large-star + small-star iterations per Beam pipeline; dedup clusters are shallow


def star(nodes: Iterable[str]) -> tuple[str, list[Edge]]:
    """Edges from every node to the smallest: enough to connect a group, not all its pairs."""
    nodes = list(nodes)
    centre = min(nodes)
    return centre, [(node, centre) for node in nodes if node != centre]


def both_ways(edge: Edge) -> Iterable[Edge]:
    yield edge
    yield edge[1], edge[0]


def large_star(element: tuple[str, Iterable[str]]) -> Iterable[Edge]:
    """Every larger neighbour of a node is linked to the smallest node of its neighbourhood."""
    node, neighbours = element
    smallest = min(node, min(neighbours))
    for other in neighbours:
        if other > node:
            yield other, smallest


def small_star(element: tuple[str, Iterable[str]]) -> Iterable[Edge]:
    """A node and its smaller neighbours are all linked to the smallest of them."""
    node, smaller = element
    smallest, edges = star(smaller)
    yield from edges
    yield node, smallest


class StarRounds(beam.PTransform):
    """Alternating large-star and small-star rounds; connectivity is kept and each round flattens the clusters."""

    def __init__(self, rounds: int) -> None:
        super().__init__()
        self.rounds = rounds

    def expand(self, edges: beam.PCollection) -> beam.PCollection:
        for i in range(self.rounds):
            edges = (
                edges
                | f"BothWays{i}" >> beam.FlatMap(both_ways)
                | f"Neighbours{i}" >> beam.GroupByKey()
                | f"LargeStar{i}" >> beam.FlatMap(large_star)
                | f"Smaller{i}" >> beam.GroupByKey()
                | f"SmallStar{i}" >> beam.FlatMap(small_star)
                | f"Distinct{i}" >> beam.Distinct()
            )
        return edges


def roles(edge: Edge) -> Iterable[tuple[str, str | None]]:
    child, parent = edge
    yield child, parent
    yield parent, None


def not_a_star(element: tuple[str, Iterable[str | None]]) -> int:
    """1 when a node has two parents, or both a parent and children: its cluster is not a star yet."""
    _, parents = element
    first, has_children = None, False
    for parent in parents:
        if parent is None:
            has_children = True
        elif first is None:
            first = parent
        elif parent != first:
            return 1
    return int(has_children and first is not None)


def write_count(count: int, path: Path) -> None:
    write_text_atomic(path, str(count))


class WriteEdges(beam.PTransform):
    """Edges to <directory>/part-*.parquet (one file per non-empty partition) and, with `check_stars`, the
    star-check count beside."""

    def __init__(self, directory: Path, total: int, check_stars: bool = True) -> None:
        super().__init__()
        self.directory, self.total, self.check_stars = directory, total, check_stars

    def expand(self, edges: beam.PCollection) -> beam.PCollection:
        directory, total = self.directory, self.total
        written = (
            edges
            | "EdgePartition" >> beam.Map(lambda edge: (partition_of(edge[0], total), edge))
            | "GroupEdges" >> beam.GroupByKey()
            | "WriteEdgeParts" >> beam.Map(write_edges, directory, total)
        )
        if not self.check_stars:
            return written
        return (
            edges
            | "Roles" >> beam.FlatMap(roles)
            | "ByNode" >> beam.GroupByKey()
            | "NotAStar" >> beam.Map(not_a_star)
            | "Violations" >> SumAlways()
            | "WriteViolations" >> beam.Map(write_count, directory / "violations.txt")
        )


def write_edges(element: tuple[int, Iterable[Edge]], directory: Path, total: int) -> None:
    """One partition's edges, sorted in memory like WriteStage's rows (edges are ~100 bytes, documents kilobytes)."""
    index, edges = element
    child, parent = zip(*sorted(edges), strict=True)
    table = pa.table({"child": list(child), "parent": list(parent)}, schema=EDGE_SCHEMA)
    write_parquet_atomic(table, directory / part_name("", index, total))


def read_edges(pipeline: beam.Pipeline, directories: list[Path], label: str) -> beam.PCollection:
    files = [str(path) for directory in directories for path in sorted(directory.glob("part-*.parquet"))]
    return (
        pipeline
        | f"{label}Files" >> beam.Create(files)
        | f"{label}Edges" >> beam.FlatMap(parquet_rows)
        | f"{label}Tuples" >> beam.Map(lambda row: (row["child"], row["parent"]))
    )


def violations(directory: Path) -> int:
    return int((directory / "violations.txt").read_text())


def count_edges(directory: Path) -> int:
    return sum(pq.read_metadata(path).num_rows for path in directory.glob("part-*.parquet"))
