"""Ingest stage: every input file into normalised document rows with stable ids; unreadable records go invalid."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path

import apache_beam as beam
import pyarrow as pa

from datafactory.factory.config import BuildConfig
from datafactory.factory.records import DROPPED, INVALID, stage_schema
from datafactory.filters.blocklist import FLAGGED_BY_TRAINING, DocumentBlocklist
from datafactory.filters.pii import PiiRedactor
from datafactory.filters.url import UrlFilter
from datafactory.pipelines.common import (
    ALONE,
    BATCH_ROWS,
    ORDER_COLUMNS,
    REPEATED_ID_MARK,
    RUN_SUFFIX,
    FollowingPass,
    PassChain,
    PassMember,
    StagePaths,
    StageResult,
    StageRun,
    decision_counts,
    document_order,
    fill_empty_partitions,
    home_id,
    last_on_trial,
    merge_run_tables,
    part_name,
    part_writer,
    partition_of,
    run_beam,
    run_stage,
    survivors,
    write_run,
)
from datafactory.pipelines.inputs import display_path, inputs_digest, named_files_digest, resolve_inputs
from datafactory.pipelines.readers import RecordReader

SPILL_TEXT_BYTES = 64 << 20  # text a reader holds before writing it out as sorted runs, one per partition
SPILL_SCHEMA_EXTRA = [pa.field("status", pa.string())]  # a row's own terminal status, for the ledger


class SpillInputFile(beam.DoFn):
    """Reads one input file (dropping blocklisted URLs and documents flagged by training: status dropped, not
    invalid; redacting PII in the rest) into sorted runs of rows, one file per partition each time SPILL_TEXT_BYTES
    of text has been read; emits (partition, run path). A reader's memory is bounded by that, whatever the file's
    size."""

    def __init__(self, config: BuildConfig, spill_dir: Path, schema: pa.Schema) -> None:
        self.config, self.spill_dir, self.schema = config, spill_dir, schema
        self.url_filter: UrlFilter | None = None
        self.redactor: PiiRedactor | None = None
        self.blocklist: DocumentBlocklist | None = None

    def setup(self) -> None:
        self.url_filter = UrlFilter(self.config.ingest.url_filter, self.config.base_dir)
        self.redactor = PiiRedactor(self.config.ingest.pii)
        self.blocklist = DocumentBlocklist(self.config.ingest.blocklists, self.config.base_dir)

    def process(self, element: tuple[int, tuple[str, int]]) -> Iterable[tuple[int, str]]:
        number, (path, spec_index) = element
        spec = self.config.inputs[spec_index]
        reader = RecordReader(spec, self.config.ingest, path, display_path(path, self.config.base_dir))
        total = self.config.num_partitions
        held: dict[int, list[dict]] = {}
        held_bytes, runs = 0, 0
        for row in reader.rows():
            if row["keep"]:
                self.screen(row)
            held.setdefault(partition_of(row["doc_id"], total), []).append(row)
            held_bytes += len(row["text"] or "")
            if held_bytes >= SPILL_TEXT_BYTES:
                yield from self.spill(held, number, runs)
                held, held_bytes, runs = {}, 0, runs + 1
        yield from self.spill(held, number, runs)

    def spill(self, held: dict[int, list[dict]], number: int, run: int) -> Iterable[tuple[int, str]]:
        for partition, rows in sorted(held.items()):
            path = self.spill_dir / f"{partition:05d}-{number:06d}-{run:06d}{RUN_SUFFIX}"
            yield partition, write_run(rows, document_order, self.schema, path)

    def screen(self, row: dict) -> None:
        if self.blocklist.blocks(row["doc_id"]):
            row.update(keep=False, reason=FLAGGED_BY_TRAINING, status=DROPPED)
            return
        verdict = self.url_filter.check(row["url"])
        if not verdict.keep:
            row.update(keep=False, reason=verdict.reason, status=DROPPED)
            return
        row["text"] = self.redactor.redact(row["text"]).text


IDENTITY = ["doc_id", "source", "input_file", "location", "meta"]  # what renaming a repeated id reads and writes


def unique_ids(tables: Iterable[pa.Table]) -> Iterator[pa.Table]:
    """Tables of rows in document_order: a record id seen before (in another file, or earlier in the same one) gets a
    suffix hashed from where the record is, and meta.original_id. Every document stays in, under an id no other row
    has; dedup then judges its content like any other. Only the identity columns become Python values."""
    home, seen = None, set()
    for table in tables:
        rows = table.select(IDENTITY).to_pylist()
        renamed = False
        for row in rows:
            if home_id(row["doc_id"]) != home:
                home, seen = home_id(row["doc_id"]), set()
            if row["doc_id"] in seen:
                where = f"{row['source']}\x00{row['input_file']}\x00{row['location']}".encode()
                meta = json.loads(row["meta"]) if row["meta"] else {}
                meta["original_id"] = row["doc_id"]
                row["meta"] = json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str)
                row["doc_id"] = renamed_id(row["doc_id"], where, seen)
                renamed = True
            seen.add(row["doc_id"])
        for name in ("doc_id", "meta") if renamed else ():
            column = table.schema.get_field_index(name)
            table = table.set_column(column, table.schema.field(name), pa.array([row[name] for row in rows],
                                                                                 pa.string()))
        yield table


def renamed_id(doc_id: str, where: bytes, seen: set[str]) -> str:
    """``<id>~<12 hex of where the record is>``, salted again while an id already read holds it (the input may
    hold that very string as an id); an id read later that equals it is renamed in turn."""
    salt = 0
    while (candidate := f"{doc_id}{REPEATED_ID_MARK}{hashlib.sha256(where + bytes(salt)).hexdigest()[:12]}") in seen:
        salt += 1
    return candidate


class MergePartition(beam.DoFn):
    """Writes one partition's part from its readers' sorted runs: a k-way merge in document_order, streamed as Arrow
    tables, with repeated ids made unique on the way. Only run paths went through the shuffle. The stages that run in
    ingest's pass (``members``) annotate the merged documents as they are written, in the windows a stage reading
    the part would see."""

    def __init__(self, paths: StagePaths, schema: pa.Schema, total: int, members: list[PassMember]) -> None:
        self.paths, self.schema, self.total, self.members = paths, schema, total, members

    def setup(self) -> None:
        for member in self.members:
            member.annotator.setup()

    def process(self, element: tuple[int, Iterable[str]]) -> Iterable[int]:
        partition, runs = element
        name = part_name("", partition, self.total)
        merged = merge_run_tables(runs, document_order, ORDER_COLUMNS, BATCH_ROWS)
        with part_writer(self.paths, name, self.schema, INVALID) as add, ExitStack() as writers:
            chain = PassChain(self.members, name, writers)
            for table in unique_ids(merged):
                written = add(table)
                if self.members:
                    chain.feed(survivors(written))
        yield partition


ADDS = tuple(field.name for field in stage_schema(None, []))


def own_inputs(config: BuildConfig, build_dir: Path) -> str:
    """The bytes of every input file and URL list, read once per build run to decide whether ingest is done."""
    return inputs_digest(resolve_inputs(config)) + named_files_digest(config, "ingest.")


def run(job: StageRun, following: FollowingPass = ALONE) -> StageResult:
    """Ingest, and the ``following`` stages in its pass."""
    config, paths = job.config, job.paths
    files = resolve_inputs(config)
    schema = stage_schema(None, [])

    spill_dir = paths.stage_dir / "_runs"
    spill_schema = pa.schema([*schema, *SPILL_SCHEMA_EXTRA])
    members: list[PassMember] = []

    def body() -> dict:
        members.extend(last_on_trial(following.members(job.build_dir, job.stage, schema), text_read=True))

        def build(pipeline: beam.Pipeline) -> None:
            (
                pipeline
                | "Files" >> beam.Create(list(enumerate(files)))
                | "Read" >> beam.ParDo(SpillInputFile(config, spill_dir, spill_schema))
                | "ByPartition" >> beam.GroupByKey()
                | "Merge" >> beam.ParDo(MergePartition(paths, schema, config.num_partitions, members))
            )

        run_beam(config, build)
        shutil.rmtree(spill_dir, ignore_errors=True)
        fill_empty_partitions(paths, schema, config.num_partitions)
        return decision_counts(paths)

    result = run_stage(job, body)
    if result.skipped:
        return result
    return dataclasses.replace(result, fused=following.finish(members, job.stage, config.num_partitions))
