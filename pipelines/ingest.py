"""Ingest stage: every input file into normalised document rows with stable ids; unreadable records go invalid."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import apache_beam as beam

from datafactory.factory.config import BuildConfig
from datafactory.factory.records import DROPPED, INVALID, stage_schema
from datafactory.filters.pii import PiiRedactor
from datafactory.filters.url import UrlFilter
from datafactory.pipelines.common import (
    REPEATED_ID_MARK,
    StageResult,
    StageRun,
    WriteStage,
    decision_counts,
    fill_empty_partitions,
    run_beam,
    run_stage,
)
from datafactory.pipelines.inputs import display_path, inputs_digest, named_files_digest, resolve_inputs
from datafactory.pipelines.readers import RecordReader


class ReadInputFile(beam.DoFn):
    """Reads one input file; drops blocklisted URLs (status dropped, not invalid) and redacts PII in the rest."""

    def __init__(self, config: BuildConfig) -> None:
        self.config = config
        self.url_filter: UrlFilter | None = None
        self.redactor: PiiRedactor | None = None

    def setup(self) -> None:
        self.url_filter = UrlFilter(self.config.ingest.url_filter, self.config.base_dir)
        self.redactor = PiiRedactor(self.config.ingest.pii)

    def process(self, element: tuple[str, int]) -> Iterable[dict]:
        path, spec_index = element
        spec = self.config.inputs[spec_index]
        reader = RecordReader(spec, self.config.ingest, path, display_path(path, self.config.base_dir))
        for row in reader.rows():
            if row["keep"]:
                self.screen(row)
            yield row

    def screen(self, row: dict) -> None:
        verdict = self.url_filter.check(row["url"])
        if not verdict.keep:
            row.update(keep=False, reason=verdict.reason, status=DROPPED)
            return
        row["text"] = self.redactor.redact(row["text"]).text


def unique_ids(rows: list[dict]) -> list[dict]:
    """Rows sorted by (doc_id, input position): a record id seen before (in another file, or earlier in the same
    one) gets a suffix hashed from where the record is, and meta.original_id. Every document stays in, under an id
    no other row has; dedup then judges its content like any other."""
    previous = None
    for row in rows:
        if row["doc_id"] == previous:
            where = f"{row['source']}\x00{row['input_file']}\x00{row['location']}".encode()
            meta = json.loads(row["meta"]) if row["meta"] else {}
            meta["original_id"] = previous
            row["meta"] = json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str)
            row["doc_id"] = f"{previous}{REPEATED_ID_MARK}{hashlib.sha256(where).hexdigest()[:12]}"
        else:
            previous = row["doc_id"]
    return rows


ADDS = tuple(field.name for field in stage_schema(None, []))


def own_inputs(config: BuildConfig, build_dir: Path) -> str:
    """The bytes of every input file and URL list, read once per build run to decide whether ingest is done."""
    return inputs_digest(resolve_inputs(config)) + named_files_digest(config, "ingest.")


def run(job: StageRun) -> StageResult:
    config, paths = job.config, job.paths
    files = resolve_inputs(config)
    schema = stage_schema(None, [])

    def body() -> dict:
        def build(pipeline: beam.Pipeline) -> None:
            (
                pipeline
                | "Files" >> beam.Create(files)
                | "Read" >> beam.ParDo(ReadInputFile(config))
                | "Write" >> WriteStage(paths, schema, config.num_partitions, INVALID, prepare=unique_ids)
            )

        run_beam(config, build)
        fill_empty_partitions(paths, schema, config.num_partitions)
        return decision_counts(paths)

    return run_stage(job, body)
