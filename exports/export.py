"""`factory export`: a manifest phase's documents in a target stack's format, plus what that stack needs to apply the
phase's weights (Megatron's --data-path blend, llm-foundry's streams, litdata's CombinedStreamingDataset weights,
`datasets.interleave_datasets` probabilities), all recorded in DIR/export.json with every file's sha256."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from datafactory.exports.documents import Phase, open_phase, source_documents
from datafactory.exports.formats import WRITERS
from datafactory.factory.atomic import write_text_atomic
from datafactory.factory.errors import UserError
from datafactory.factory.shards import sha256_file

SIDECAR = "export.json"
FORMAT_VERSION = 1


class ExportError(UserError, ValueError):
    """An export that cannot be written or does not verify; the message names the file."""


def _counting(documents: Iterable[np.ndarray], counts: dict[str, int]) -> Iterator[np.ndarray]:
    """The documents, unchanged, with their number and tokens added to `counts` on the way through."""
    for document in documents:
        counts["documents"] += 1
        counts["tokens"] += len(document)
        yield document


def usage(fmt: str, out: Path, sources: list[dict], seq_len: int) -> dict[str, str]:
    """How the target stack reads this export with the phase's weights, as the lines to paste."""
    root = out.resolve()
    if fmt == "megatron":
        blend = " ".join(f"{source['weight']:.6g} {root / source['name']}" for source in sources)
        return {"megatron": f'--data-path {blend} --split 100,0,0 --seq-length {seq_len}'}
    if fmt == "mds":
        streams = "\n".join(f"      {source['name']}: {{local: {root / source['name']}, proportion: "
                            f"{source['weight']:.6g}}}" for source in sources)
        return {"llm-foundry": f"train_loader:\n  dataset:\n    streams:\n{streams}"}
    if fmt == "litdata":
        names = ", ".join(f"StreamingDataset('{root / s['name']}', item_loader=TokensLoader(block_size={seq_len + 1}))"
                          for s in sources)
        weights = ", ".join(f"{source['weight']:.6g}" for source in sources)
        return {"litdata": f"CombinedStreamingDataset([{names}], weights=[{weights}])"}
    files = ", ".join(f"'{source['name']}': '{root / source['name']}/*.parquet'" for source in sources)
    weights = ", ".join(f"{source['weight']:.6g}" for source in sources)
    return {"datasets": f"parts = load_dataset('parquet', data_files={{{files}}}); "
                        f"interleave_datasets([parts[name] for name in parts], probabilities=[{weights}], "
                        "stopping_strategy='all_exhausted')"}


def export(manifest_path: str | Path, fmt: str, out: str | Path) -> dict:
    """Write the phase into `out` (replacing an export of other content there) and return the sidecar. An export
    of the same manifest bytes and format that still verifies is kept as it is."""
    if fmt not in WRITERS:
        raise ExportError(f"unknown export format {fmt!r}; known: {', '.join(WRITERS)}")
    if not Path(manifest_path).is_file():
        raise ExportError(f"manifest not found: {manifest_path}")
    out, manifest_sha = Path(out), sha256_file(manifest_path)
    if (out / SIDECAR).exists():
        sidecar = json.loads((out / SIDECAR).read_text(encoding="utf-8"))
        if (sidecar.get("manifest_sha256"), sidecar.get("format")) == (manifest_sha, fmt) and not verify(out):
            return sidecar
    phase = open_phase(manifest_path)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    sources = [_write_source(phase, source_index, fmt, out) for source_index in range(len(phase.sources))]
    sidecar = {"format_version": FORMAT_VERSION, "format": fmt, "manifest": str(Path(manifest_path).resolve()),
               "manifest_sha256": manifest_sha, "phase": phase.manifest["phase"], "seq_len": phase.manifest["seq_len"],
               "tokenizer": phase.manifest["tokenizer"], "dtype": phase.dtype.name, "sources": sources,
               "usage": usage(fmt, out, sources, phase.manifest["seq_len"])}
    write_text_atomic(out / SIDECAR, json.dumps(sidecar, indent=2) + "\n")
    return sidecar


def _write_source(phase: Phase, index: int, fmt: str, out: Path) -> dict:
    source = phase.sources[index]
    counts = {"documents": 0, "tokens": 0}
    documents = _counting(source_documents(source, phase.manifest["tokenizer"]["bos_id"]), counts)
    files = WRITERS[fmt](documents, out, source.name, phase.dtype)
    return {"name": source.name, "weight": source.weight, "planned_tokens": source.planned_tokens, **counts,
            "files": [{"path": path, "sha256": sha256_file(out / path)} for path in files]}


def verify(out: str | Path) -> list[str]:
    """Every file the sidecar lists, checked against its sha256: the problems, one line each (none: it verifies)."""
    out = Path(out)
    try:
        sidecar = json.loads((out / SIDECAR).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [f"{out / SIDECAR}: no export sidecar here"]
    except json.JSONDecodeError as err:
        return [f"{out / SIDECAR}: not valid JSON ({err})"]
    problems = []
    for source in sidecar.get("sources", []):
        for item in source["files"]:
            path = out / item["path"]
            if not path.is_file():
                problems.append(f"{path}: missing")
            elif sha256_file(path) != item["sha256"]:
                problems.append(f"{path}: sha256 differs from {SIDECAR}")
    return problems
