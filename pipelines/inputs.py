"""The build's input files: which files a config names (its globs, checked before any work), their format by
extension, how they are shown in ids and the ledger, and the digest that decides whether ingest is done."""

from __future__ import annotations

import hashlib
from pathlib import Path

import fsspec

from datafactory.factory.config import BuildConfig, ConfigError, check_named_files

JSONL_SUFFIXES = {".jsonl": None, ".json": None, ".ndjson": None}
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}
WEB_SUFFIXES = {".warc": "warc", ".wet": "wet"}
FORMATS = ("jsonl", "parquet", "warc", "wet")


def detect_format(path: str) -> tuple[str | None, str | None]:
    """(format, compression) from the file name; format None when the extension is unknown."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    compression = COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    if compression:
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last == ".parquet":
        return "parquet", compression
    if last in JSONL_SUFFIXES:
        return "jsonl", compression
    if last in WEB_SUFFIXES:  # .warc.gz, .wet.gz, .warc.wet.gz (Common Crawl's name), plain or zstd
        return WEB_SUFFIXES[last], compression
    return None, compression


def resolve_inputs(config: BuildConfig) -> list[tuple[str, int]]:
    """Every input file with the index of its spec. Config errors, raised before any work: a spec that matches
    nothing, a file two specs match (its records would be read twice), a model or list file that is missing."""
    files: list[tuple[str, int]] = []
    owner: dict[str, int] = {}
    for index, spec in enumerate(config.inputs):
        pattern = spec.path if "://" in spec.path else str(Path(config.base_dir) / spec.path)
        fs = fsspec.core.url_to_fs(pattern)[0]
        matches = sorted(fs.unstrip_protocol(p) if "://" in pattern else p for p in fs.glob(pattern))
        if not matches:
            raise ConfigError(f"inputs[{index}].path: no file matches {spec.path!r} (base dir {config.base_dir})")
        for match in matches:
            if (first := owner.setdefault(match, index)) != index:
                raise ConfigError(f"inputs[{index}].path: {match} is already matched by inputs[{first}].path")
            files.append((match, index))
    check_named_files(config)
    return files


def display_path(path: str, base_dir: str) -> str:
    """Path as recorded in ids and the ledger: relative to the config's base dir when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path(base_dir).resolve()))
    except ValueError:
        return path


def inputs_digest(files: list[tuple[str, int]]) -> str:
    """The bytes of every (file, input spec index), in order."""
    digest = hashlib.sha256()
    for path, index in files:
        digest.update(f"{path}\x00{index}\x00".encode())
        with fsspec.open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def input_bytes(files: list[tuple[str, int]]) -> int:
    """Total size of the build's input files (what the runner's "auto" mode is chosen by)."""
    total = 0
    for path, _ in files:
        fs, local = fsspec.core.url_to_fs(path)
        total += fs.size(local)
    return total


def named_files_digest(config: BuildConfig, prefix: str) -> str:
    """The bytes of the model and list files the config names under ``prefix`` (e.g. "langid."), so replacing one
    in place re-runs the stage that reads it."""
    named = sorted((key, path) for key, path in config.named_files().items() if key.startswith(prefix))
    return inputs_digest([(path, index) for index, (_, path) in enumerate(named)])
