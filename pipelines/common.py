"""Shared Beam plumbing: runner options, reading stage parts, partitioned atomic Parquet writes, stage skipping."""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import apache_beam as beam
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pipeline import AppliedPTransform, PipelineVisitor

from datafactory.factory.atomic import atomic_path
from datafactory.factory.config import BuildConfig, RunnerConfig
from datafactory.factory.markers import is_done, read_marker, reset_paths, write_marker
from datafactory.factory.records import (
    DECISION_COLUMNS,
    DOCUMENT_FIELDS,
    DROPPED,
    KEPT,
    LEDGER_SCHEMA,
    input_order,
    ledger_row,
    stage_schema,
)
from datafactory.pipelines.watchdog import WATCHED_DISK, watched_workers

log = logging.getLogger(__name__)


def beam_options(runner: RunnerConfig) -> PipelineOptions:
    """The in-process FnApiRunner by default (nothing downloaded); any runner by its options."""
    if runner.direct_running_mode == "auto":
        raise ValueError("direct_running_mode 'auto' must be settled by RunnerConfig.for_input before Beam starts")
    options: dict = {"runner": runner.runner, **runner.options}
    if runner.local_workers is not None:
        options |= {"direct_num_workers": runner.local_workers, "direct_running_mode": runner.direct_running_mode}
    return PipelineOptions.from_dictionary(options)


REPEATED_ID_MARK = "~"  # ingest renames a repeated record id to "<id>~<hash of where the record is>"


def home_id(doc_id: str) -> str:
    """The id as the input gave it: a repeated id that ingest renamed keeps its original's partition and place."""
    return doc_id.split(REPEATED_ID_MARK, 1)[0]


def partition_of(doc_id: str, num_partitions: int) -> int:
    """A document's partition, the same in every stage from ingest on."""
    return xxhash.xxh64_intdigest(home_id(doc_id).encode()) % num_partitions


def document_order(row: dict) -> tuple:
    """The order of rows in every part: by id as the input gave it, then where the record sits in the input. Renaming
    a repeated id does not move its row, so parts written in this order can be merge-joined on doc_id."""
    return home_id(row["doc_id"]), *input_order(row)


def part_name(prefix: str, index: int, total: int) -> str:
    return f"{prefix}part-{index:05d}-of-{total:05d}.parquet"


def write_parquet_atomic(table: pa.Table, path: Path, row_group_size: int | None = None,
                         compression: str = "zstd") -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression=compression, row_group_size=row_group_size)


@dataclass(frozen=True)
class StagePaths:
    """Where one stage of one build writes: its parts, its ledger rows, its marker."""

    build_dir: Path
    stage: str

    @property
    def stage_dir(self) -> Path:
        return self.build_dir / "stages" / self.stage

    @property
    def ledger_dir(self) -> Path:
        return self.build_dir / "ledger"

    def parts(self) -> list[Path]:
        return sorted(self.stage_dir.glob("part-*.parquet"))

    def ledger_parts(self) -> list[Path]:
        return sorted(self.ledger_dir.glob(f"{self.stage}-part-*.parquet"))

    def ledger_leftovers(self) -> list[Path]:
        """Ledger parts and the temporary files a killed run of this stage left beside them."""
        return self.ledger_parts() + sorted(self.ledger_dir.glob(f".{self.stage}-part-*.tmp-*"))


TEXT_FROM = b"datafactory.text_from"  # Parquet schema metadata: the stage whose parts hold this part's text


def text_source(part: Path | str, schema: pa.Schema | None = None) -> str:
    """The stage whose parts hold the text of the documents in ``part``: its own stage when it stores the text, else
    the one its schema metadata names (stages that do not change the text store only what they add)."""
    schema = schema or pq.read_schema(part)
    if "text" in schema.names:
        return Path(part).parent.name
    return schema.metadata[TEXT_FROM].decode()


def added_names(fields: list[pa.Field] | pa.Schema) -> tuple[str, ...]:
    """The columns a stage adds (its ADDS): its fields, less the document's identity and the decision every stage
    writes."""
    carried = {field.name for field in DOCUMENT_FIELDS} | set(DECISION_COLUMNS)
    return tuple(field.name for field in fields if field.name not in carried)


# A stage that reads less than this share of the documents whose text its upstream's holder stores, stores their
# text itself: later stages then read the survivors' text, not every document's (a full scan of ingest's text per
# stage was a third of the late stages' time). The text is written at most 1 + 1/2 + 1/4 + ... = 2 times.
COMPACT_BELOW = 0.5


def output_schema(previous: StagePaths, added: list[pa.Field], consumed: tuple[str, ...] = (),
                  writes_text: bool = False) -> pa.Schema:
    """A stage's part schema: the upstream columns it carries, its own, its decision. The text is written once: only a
    stage that changes it, or reads a small share of what its holder holds (COMPACT_BELOW), stores it again; the
    others name, in the schema metadata, the stage that holds it."""
    first = previous.parts()[0]
    upstream = pq.read_schema(first)
    if writes_text or kept_text(previous).share < COMPACT_BELOW:
        text = [] if "text" in upstream.names else [pa.field("text", pa.string())]
        return stage_schema(upstream, [*text, *added], consumed).remove_metadata()
    schema = stage_schema(upstream, added, (*consumed, "text"))
    return schema.with_metadata({TEXT_FROM: text_source(first).encode()})


@dataclass(frozen=True)
class KeptText:
    """What a finished stage kept, against the parts that hold its documents' text (from Parquet metadata and the
    stage's marker: nothing is read)."""

    kept: int
    holder_rows: int
    holder_text_bytes: int  # uncompressed size of the holder's text column

    @property
    def share(self) -> float:
        """The kept documents' share of the holder's rows."""
        return self.kept / max(self.holder_rows, 1)

    @property
    def text_bytes(self) -> int:
        """About how many bytes of text the kept documents hold."""
        return self.holder_text_bytes * self.kept // max(self.holder_rows, 1)


def kept_text(paths: StagePaths) -> KeptText:
    """What the finished stage at ``paths`` kept, sized against the parts that hold its documents' text."""
    parts = paths.parts()
    if not parts:
        return KeptText(0, 0, 0)
    rows = text_bytes = 0
    for holder in sorted((paths.build_dir / "stages" / text_source(parts[0])).glob("part-*.parquet")):
        metadata = pq.ParquetFile(holder).metadata
        # a Parquet leaf column, not an Arrow field: a map or list column before it counts as two or more
        column = next(index for index in range(metadata.num_columns) if metadata.schema.column(index).path == "text")
        rows += metadata.num_rows
        text_bytes += sum(metadata.row_group(group).column(column).total_uncompressed_size
                          for group in range(metadata.num_row_groups))
    kept = ((read_marker(paths.stage_dir) or {}).get("counts") or {}).get("kept", rows)
    return KeptText(kept, rows, text_bytes)


class TextCursor:
    """The texts of one part's documents, read forward from the part that holds them: a later stage's part is a
    subsequence of it in the same (doc_id) order, so a merge join reads it once, a row group at a time."""

    def __init__(self, holder: Path, rows: int = 1024) -> None:
        self.holder = holder
        self.batches = pq.ParquetFile(holder).iter_batches(batch_size=rows, columns=["doc_id", "text"])
        self.ids: list[str] = []
        self.texts: pa.Array | None = None
        self.position = 0

    def take(self, doc_ids: list[str]) -> pa.Array:
        chunks, picked = [], []
        for doc_id in doc_ids:
            while True:
                if self.position == len(self.ids):
                    if picked:
                        chunks.append(self.texts.take(picked))
                        picked = []
                    self.advance(doc_id)
                if self.ids[self.position] == doc_id:
                    break
                self.position += 1
            picked.append(self.position)
            self.position += 1
        if picked:
            chunks.append(self.texts.take(picked))
        return pa.concat_arrays(chunks) if chunks else pa.array([], pa.string())

    def advance(self, wanted: str) -> None:
        batch = next(self.batches, None)
        if batch is None:
            raise LookupError(f"{self.holder}: no text for document {wanted!r} (parts out of doc_id order)")
        self.ids, self.texts, self.position = batch.column(0).to_pylist(), batch.column(1), 0


def iter_kept_tables(part: Path, size: int, with_text: bool = True) -> Iterator[pa.Table]:
    """The rows one part kept, ``size`` at a time in file order, without decision columns, with their text (unless
    ``with_text`` is False and the part does not hold it), as Arrow tables: the memory held is a batch (and a row
    group of the text's part), not the part."""
    parquet = pq.ParquetFile(part)
    schema = parquet.schema_arrow
    texts = None
    if with_text and "text" not in schema.names:
        texts = TextCursor(part.parent.parent / text_source(part, schema) / part.name)
    for batch in parquet.iter_batches(batch_size=size):
        kept = pa.Table.from_batches([batch]).filter(pa.compute.field("keep")).drop_columns(list(DECISION_COLUMNS))
        if not kept.num_rows:
            continue
        if texts is not None:
            kept = kept.append_column("text", texts.take(kept["doc_id"].to_pylist()))
        yield kept


def iter_kept_schema(part: Path) -> pa.Schema:
    """The schema iter_kept_tables yields for ``part``."""
    schema = pq.read_schema(part)
    kept = pa.schema([field for field in schema if field.name not in DECISION_COLUMNS])
    return kept if "text" in kept.names else kept.append(pa.field("text", pa.string()))


def iter_kept_batches(part: Path, size: int, with_text: bool = True) -> Iterator[list[dict]]:
    """iter_kept_tables as lists of row dicts (what the per-document judges take)."""
    for table in iter_kept_tables(part, size, with_text):
        yield table.to_pylist()


RUN_ROWS = 256  # rows per row group of a spilled run: what a merge holds of each run at once
# A run is read once: LZ4 decompresses at 2.5x zstd's speed (ingest's runs are the whole text) for twice the bytes.
RUN_COMPRESSION = "lz4"


def write_run(rows: list[dict], order: Callable[[dict], object], schema: pa.Schema, path: Path) -> str:
    """Spill ``rows`` sorted by ``order`` (a run, for merge_runs); returns its path."""
    table = pa.Table.from_pylist(sorted(rows, key=order), schema=schema)
    write_parquet_atomic(table, path, row_group_size=RUN_ROWS, compression=RUN_COMPRESSION)
    return str(path)


MERGE_FAN_IN = 32  # runs one merge reads at once; more are merged in groups into longer runs first


def merge_runs(paths: Iterable[str], order: Callable[[dict], object]) -> Iterator[dict]:
    """The rows of sorted runs in one ``order``, streamed: a k-way merge holding one row group of each run. Past
    MERGE_FAN_IN runs, groups of them are first merged into longer runs beside them (cleared with the runs), so what a
    merge holds stays bounded however many runs a large input made."""
    paths = sorted(paths)
    level = 0
    while len(paths) > MERGE_FAN_IN:
        groups = [paths[start : start + MERGE_FAN_IN] for start in range(0, len(paths), MERGE_FAN_IN)]
        paths = [_merge_into_run(group, order, level, number) for number, group in enumerate(groups)]
        level += 1
    return _merge(paths, order)


def parquet_rows(path: str | Path) -> Iterator[dict]:
    """A Parquet file's rows, holding one row group at a time (iter_batches reads several ahead)."""
    file = pq.ParquetFile(path)
    for group in range(file.num_row_groups):
        yield from file.read_row_group(group).to_pylist()


def _merge(paths: list[str], order: Callable[[dict], object]) -> Iterator[dict]:
    return heapq.merge(*(parquet_rows(path) for path in paths), key=order)


def _merge_into_run(paths: list[str], order: Callable[[dict], object], level: int, number: int) -> str:
    first = Path(paths[0])
    target = first.with_name(f"{first.stem}.merged-{level}-{number}.parquet")
    schema = pq.read_schema(first)
    with atomic_path(target) as tmp, pq.ParquetWriter(tmp, schema, compression=RUN_COMPRESSION) as writer:
        batch: list[dict] = []
        for row in _merge(paths, order):
            batch.append(row)
            if len(batch) == RUN_ROWS:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    return str(target)


def kept_rows(path: str) -> pa.Table:
    """Every row one part kept, with its text, in one table (small parts: tests and inspection)."""
    tables = list(iter_kept_tables(Path(path), 4096))
    return pa.concat_tables(tables) if tables else pa.Table.from_batches([], iter_kept_schema(Path(path)))


class ReadKeptBatches(beam.DoFn):
    """Reads one Parquet part of the previous stage and emits the rows it kept (without decision columns) as lists of
    up to ``size`` rows in file order: batches made at read time are the same on every runner and worker count
    (BatchElements emits its last batch from finish_bundle, which the DaskRunner drops)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def process(self, path: str) -> Iterable[list[dict]]:
        yield from iter_kept_batches(Path(path), self.size)


def read_kept_batches(pipeline: beam.Pipeline, upstream: StagePaths, size: int, runner: RunnerConfig,
                      label: str = "Read") -> beam.PCollection:
    """The upstream stage's kept rows as lists of at most ``size`` rows. Each file's batches stay with the worker
    that read it when there are at least as many files as local workers; otherwise (or on a cluster, whose size
    is not known here) a Reshuffle spreads them, at the price of moving every row through Beam's coders
    (~8% of the tokenize stage on one core)."""
    return each_part(pipeline, upstream, runner, label) | f"{label}Batches" >> beam.ParDo(ReadKeptBatches(size))


def each_part(pipeline: beam.Pipeline, upstream: StagePaths, runner: RunnerConfig, label: str = "Parts"
              ) -> beam.PCollection:
    """The upstream stage's part paths, one element each, spread over the workers."""
    files = [str(path) for path in upstream.parts()]
    return spread(pipeline | f"{label}Files" >> beam.Create(files), len(files), runner, label)


def spread(pcoll: beam.PCollection, files: int, runner: RunnerConfig, label: str) -> beam.PCollection:
    """Reshuffled only where `files` inputs cannot keep every worker busy (or the worker count is unknown)."""
    workers = runner.local_workers
    if workers is None or files < workers:
        return pcoll | f"{label}Spread" >> beam.Reshuffle()
    return pcoll


def only(kind: str):
    """A FlatMap function passing on the values of (kind, value) pairs of one kind: how a DoFn's several outputs
    are split here, since the DaskRunner hands every tagged output of a DoFn to each consumer."""
    return lambda item: [item[1]] if item[0] == kind else []


class SumAlways(beam.PTransform):
    """The sum of a PCollection of ints as one element, 0 when it is empty. Not CombineGlobally: its default for an
    empty input is a side input, and side inputs are not reliable on the DaskRunner."""

    def expand(self, numbers: beam.PCollection) -> beam.PCollection:
        zero = numbers.pipeline | "Zero" >> beam.Create([(None, 0)])
        keyed = numbers | "OneKey" >> beam.Map(lambda number: (None, number))
        return (zero, keyed) | "WithZero" >> beam.Flatten() | "Sum" >> beam.CombinePerKey(sum) | beam.Values()


class collect(beam.PTransform):  # noqa: N801 - reads like the beam.combiners.ToList it replaces
    """Every element in one list, emitted once (nothing for an empty input). A GroupByKey on one key, not
    CombineGlobally, whose default for empty input is a side input: side inputs are not reliable on the DaskRunner."""

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        return (
            pcoll
            | "OneKey" >> beam.Map(lambda element: (None, element))
            | "Together" >> beam.GroupByKey()
            | "AsList" >> beam.MapTuple(lambda _, elements: list(elements))
        )


class WritePartition(beam.DoFn):
    """Writes one partition (rows in document_order, so output is independent of worker count) and its ledger."""

    def __init__(self, paths: StagePaths, schema: pa.Schema, total: int, drop_status: str) -> None:
        self.paths, self.schema, self.total, self.drop_status = paths, schema, total, drop_status

    def process(self, element: tuple[int, Iterable[dict]]) -> Iterable[str]:
        index, rows = element
        ordered = sorted(rows, key=document_order)
        write_part(self.paths, part_name("", index, self.total), self.schema, self.drop_status, [ordered])
        yield str(index)


ROW_GROUP_ROWS = 4096  # rows buffered (as Arrow, only the part's columns) before a row group is written


def write_part(paths: StagePaths, name: str, schema: pa.Schema, drop_status: str,
               batches: Iterable[list[dict]]) -> None:
    """Writes one stage part (rows in the order given) and its ledger part, each atomically. A row may name its own
    terminal status (ingest drops blocklisted URLs but calls unreadable input invalid)."""
    terminal: list[dict] = []
    pending: list[pa.Table] = []
    pending_rows = 0
    with atomic_path(paths.stage_dir / name) as tmp, pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for rows in batches:
            pending.append(pa.Table.from_pylist(rows, schema=schema))  # drops what the part does not store (text)
            pending_rows += len(rows)
            terminal += [ledger_row(row, row.get("status") or drop_status, paths.stage)
                         for row in rows if drop_status == KEPT or not row["keep"]]
            if pending_rows >= ROW_GROUP_ROWS:
                writer.write_table(pa.concat_tables(pending))
                pending, pending_rows = [], 0
        if pending:
            writer.write_table(pa.concat_tables(pending))
    write_parquet_atomic(pa.Table.from_pylist(terminal, schema=LEDGER_SCHEMA),
                         paths.ledger_dir / f"{paths.stage}-{name}")


class WriteStage(beam.PTransform):
    """Partitions rows by doc_id hash and writes every partition with WritePartition."""

    def __init__(self, paths: StagePaths, schema: pa.Schema, total: int, drop_status: str) -> None:
        super().__init__()
        self.paths, self.schema, self.total, self.drop_status = paths, schema, total, drop_status

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        total = self.total
        return (
            rows
            | "KeyByPartition" >> beam.Map(lambda row: (partition_of(row["doc_id"], total), row))
            | "GroupPartition" >> beam.GroupByKey()
            | "WritePartition" >> beam.ParDo(WritePartition(self.paths, self.schema, total, self.drop_status))
        )


def fill_empty_partitions(paths: StagePaths, schema: pa.Schema, total: int) -> None:
    """Partitions that received no rows still get (empty) files, so every build has the same file set."""
    for index in range(total):
        part = paths.stage_dir / part_name("", index, total)
        if not part.exists():
            write_parquet_atomic(schema.empty_table(), part)
        ledger = paths.ledger_dir / part_name(f"{paths.stage}-", index, total)
        if not ledger.exists():
            write_parquet_atomic(LEDGER_SCHEMA.empty_table(), ledger)


def decision_counts(paths: StagePaths) -> dict:
    """Documents in, kept, and dropped per reason, read back from the stage's own output."""
    files = [str(path) for path in paths.parts()]
    rows = duckdb.sql(
        "SELECT keep, reason, count(*) FROM read_parquet($files) GROUP BY ALL ORDER BY ALL",
        params={"files": files},
    ).fetchall()
    reasons: dict[str, int] = {}
    kept = 0
    for keep, reason, count in rows:
        if keep:
            kept += count
        else:
            reasons[reason or "unspecified"] = reasons.get(reason or "unspecified", 0) + count
    return {"documents": kept + sum(reasons.values()), "kept": kept, "dropped": reasons}


@dataclass
class StageResult:
    stage: str
    counts: dict
    skipped: bool
    seconds: float


class LostDocuments(RuntimeError):
    """A stage wrote a different number of documents than its upstream stage kept."""


def check_conservation(stage: str, counts: dict, upstream: StagePaths | None) -> None:
    """Every document the upstream stage kept must come out of this one (kept, dropped or duplicate): a runner that
    loses elements (the DaskRunner drops whatever a DoFn emits from finish_bundle) fails the stage, loudly."""
    marker = None if upstream is None else read_marker(upstream.stage_dir)
    expected = (marker or {}).get("counts", {}).get("kept")
    if expected is not None and "documents" in counts and counts["documents"] != expected:
        raise LostDocuments(f"{stage}: wrote {counts['documents']:,} documents but {upstream.stage} kept "
                            f"{expected:,}; the runner lost or repeated elements (no marker written)")


@dataclass(frozen=True)
class StageRun:
    """What the stage registry hands a stage's run function: the build, the stage's name, the stage whose kept
    documents it reads (None: it reads the raw inputs), its config hash and its input digest, computed once."""

    config: BuildConfig
    build_dir: Path
    stage: str
    reads: str | None
    config_hash: str  # of the settings the stage reads
    input_hash: str

    @property
    def paths(self) -> StagePaths:
        return StagePaths(self.build_dir, self.stage)

    @property
    def previous(self) -> StagePaths | None:
        return None if self.reads is None else StagePaths(self.build_dir, self.reads)


def run_stage(job: StageRun, body: Callable[[], dict], extra_outputs: Callable[[], list[Path]] = list) -> StageResult:
    """Skip a stage whose marker matches its config hash and input digest; otherwise clear its leftovers, run it,
    and write its marker last. This is the build's one resume mechanism."""
    paths, config_hash = job.paths, job.config_hash
    if is_done(paths.stage_dir, config_hash, job.input_hash):
        return StageResult(job.stage, read_marker(paths.stage_dir)["counts"], True, 0.0)
    start = time.perf_counter()
    reset_paths(paths.stage_dir, paths.ledger_leftovers())
    watching = WATCHED_DISK.set(job.build_dir)
    try:
        counts = body()
    finally:
        WATCHED_DISK.reset(watching)
    check_conservation(job.stage, counts, job.previous)
    outputs = paths.parts() + paths.ledger_parts() + extra_outputs()
    write_marker(job.build_dir, paths.stage_dir, job.stage, config_hash, job.input_hash, counts, outputs)
    return StageResult(job.stage, counts, False, time.perf_counter() - start)


class _Leaves(PipelineVisitor):
    """Collects the PCollections no transform consumes: the ends of a pipeline's branches."""

    def __init__(self) -> None:
        self.produced: list[beam.PCollection] = []
        self.consumed: set[int] = set()

    def visit_transform(self, node: AppliedPTransform) -> None:
        self.consumed |= {id(pcoll) for pcoll in node.inputs}
        self.consumed |= {id(side.pvalue) for side in node.side_inputs}
        self.produced += [out for out in node.outputs.values() if isinstance(out, beam.PCollection)]


def join_branches(pipeline: beam.Pipeline) -> None:
    """Make every branch end in one last transform. The DaskRunner computes only the graph behind the last transform
    it translates, so a second sink (the quality cut points, the shard index) would silently never run."""
    visitor = _Leaves()
    pipeline.visit(visitor)
    leaves = [pcoll for pcoll in visitor.produced if id(pcoll) not in visitor.consumed]
    ends = [leaf | f"EndOfBranch{i}" >> beam.Filter(lambda _: False) for i, leaf in enumerate(leaves)]
    _ = ends | "AllBranches" >> beam.Flatten()


def run_beam(config: BuildConfig, build: Callable[[beam.Pipeline], None]) -> None:
    pipeline = beam.Pipeline(options=beam_options(config.runner))
    build(pipeline)
    join_branches(pipeline)
    runner = config.runner
    with watched_workers(runner.direct_running_mode == "multi_processing" and runner.local_workers is not None):
        result = pipeline.run()  # the in-process runner finishes the pipeline here
    try:
        result.wait_until_finish()
    finally:
        client = getattr(result, "client", None)  # the DaskRunner opens a dask.distributed client per pipeline
        if client is not None:
            client.close()


class AnnotateBatch:
    """Base for per-document stages: loads its model once per worker (setup), then judges documents a batch at a
    time (annotate: the rows, updated in place, in their order)."""

    reads_text = True  # False: annotate needs only the upstream columns, so the text is not read unless stored

    def setup(self) -> None:
        return None

    def annotate(self, rows: list[dict]) -> list[dict]:
        raise NotImplementedError


class MapParts(beam.DoFn):
    """A per-document stage without a shuffle: upstream part N becomes this stage's part N (a document keeps its
    partition from ingest on), streamed a batch at a time, so a worker holds one batch and one row group, not a
    partition, and nothing moves between processes but file names."""

    def __init__(self, paths: StagePaths, schema: pa.Schema, annotator: AnnotateBatch, batch_size: int) -> None:
        self.paths, self.schema, self.annotator, self.batch_size = paths, schema, annotator, batch_size

    def setup(self) -> None:
        self.annotator.setup()

    def process(self, upstream_part: str) -> Iterable[str]:
        with_text = self.annotator.reads_text or "text" in self.schema.names
        rows = iter_kept_batches(Path(upstream_part), self.batch_size, with_text)
        batches = (self.annotator.annotate(batch) for batch in rows)
        write_part(self.paths, Path(upstream_part).name, self.schema, DROPPED, batches)
        yield upstream_part


def map_parts(config: BuildConfig, upstream: StagePaths, dofn: beam.DoFn) -> None:
    """Run ``dofn`` once per upstream part, the parts spread over the runner's workers."""
    run_beam(config, lambda pipeline: each_part(pipeline, upstream, config.runner) | "EachPart" >> beam.ParDo(dofn))


def run_document_stage(
    job: StageRun,
    added: list[pa.Field],
    make_dofn: Callable[[], AnnotateBatch],
    batch_size: int = 256,
    consumed: tuple[str, ...] = (),
    writes_text: bool = False,
    facts: Callable[[], dict] = dict,
) -> StageResult:
    """A stage that reads the upstream survivors, annotates them in batches, and writes keep/drop per document;
    ``consumed`` upstream columns are not carried on; what ``facts`` returns joins the decision counts in the marker."""
    paths, previous, config = job.paths, job.previous, job.config
    schema = output_schema(previous, added, consumed, writes_text)
    total = config.num_partitions

    def body() -> dict:
        map_parts(config, previous, MapParts(paths, schema, make_dofn(), batch_size))
        fill_empty_partitions(paths, schema, total)
        return decision_counts(paths) | facts()

    return run_stage(job, body)
