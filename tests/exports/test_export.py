"""`factory export`: the documents of a manifest phase come back out of the packed shards exactly (a document split
across two shards of a stream joined again), and each target stack's own reader sees every token in order:
megatron-core's IndexedDataset, MosaicML streaming's StreamingDataset, litdata's StreamingDataset with its
TokensLoader, and Hugging Face `datasets`. The sidecar verifies the files and a rerun keeps a matching export."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from datafactory.app.cli import app
from datafactory.exports.documents import PhaseSource, open_phase, source_documents
from datafactory.exports.export import SIDECAR, export, verify
from datafactory.factory.shards import shard_schema, write_shard
from datafactory.pipelines.tokenize import Packer

BOS, EOS, PAD = 1, 2, 0


def test_a_document_split_across_shards_is_joined_again(tmp_path):
    rng = np.random.default_rng(0)
    documents = [rng.integers(4, 500, size=int(length)).astype(np.uint32) for length in rng.integers(1, 40, 30)]
    packer, width = Packer(width=9, rows=3, bos=BOS, eos=EOS, pad=PAD), 9
    blocks = [block for doc in documents for block, _ in packer.add({}, doc)] + [b for b, _ in packer.finish()]
    assert len(blocks) > 5
    schema = shard_schema(width - 1, np.dtype(np.uint16), {})
    paths = []
    for number, block in enumerate(blocks):
        paths.append(tmp_path / "web" / f"part000-{number:05d}.arrow")
        paths[-1].parent.mkdir(exist_ok=True)
        write_shard(paths[-1], type(block)(block.tokens.astype(np.uint16), block.doc_starts, block.valid_len), schema)
    found = list(source_documents(PhaseSource("web", 1.0, 0, paths), BOS))
    assert [doc.tolist() for doc in found] == [[BOS, *doc.tolist(), EOS] for doc in documents]
    # without its predecessor shard, a continuation stands alone rather than being glued to an unrelated document
    alone = list(source_documents(PhaseSource("web", 1.0, 0, paths[1:]), BOS))
    first_shard = sum(len(block.tokens.reshape(-1)[:block.valid_len.sum()]) for block in blocks[:1])
    assert np.concatenate(alone).tolist() == np.concatenate(found).tolist()[first_shard:]
    assert alone[0][0] != BOS and all(doc[0] == BOS for doc in alone[1:])


@pytest.fixture(scope="module")
def phase(reference_build):
    manifest = reference_build / "manifests" / "stable.json"
    opened = open_phase(manifest)
    bos = opened.manifest["tokenizer"]["bos_id"]
    return manifest, {source.name: [doc.tolist() for doc in source_documents(source, bos)]
                      for source in opened.sources}


def test_the_phase_documents_are_every_token_in_order(phase, reference_build):
    manifest, documents = phase
    opened = open_phase(manifest)
    for source in opened.sources:
        from datafactory.factory.shards import read_shard

        tokens = [token for path in source.shards for shard in [read_shard(path)]
                  for row in range(shard.rows) for token in shard.tokens[row, :shard.valid_len[row]].tolist()]
        assert [token for doc in documents[source.name] for token in doc] == tokens
        assert all(doc[0] == opened.manifest["tokenizer"]["bos_id"] for doc in documents[source.name])


@pytest.fixture(scope="module")
def exported(phase, tmp_path_factory):
    manifest, _ = phase
    root = tmp_path_factory.mktemp("exports")
    return {fmt: (root / fmt, export(manifest, fmt, root / fmt)) for fmt in ("megatron", "mds", "litdata", "hf")}


def test_megatron_core_reads_every_document(phase, exported):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    _, documents = phase
    out, sidecar = exported["megatron"]
    for source in sidecar["sources"]:
        dataset = IndexedDataset(str(out / source["name"]))
        assert len(dataset) == source["documents"] == len(documents[source["name"]])
        assert [dataset[i].tolist() for i in range(len(dataset))] == documents[source["name"]]
        assert dataset.document_indices.tolist() == list(range(len(dataset) + 1))
    blend = sidecar["usage"]["megatron"]
    assert blend.startswith("--data-path ") and "--split 100,0,0" in blend
    assert all(str(out / source["name"]) in blend for source in sidecar["sources"])


def read_mds(folder) -> list[list[int]]:
    """The `tokens` column of every sample, read by the MDS format as mosaicml-streaming publishes it (index.json
    version 2; a shard is [count: u32][offsets: u32 x count+1][config][samples]; a sample starts with the uint32 size
    of each variable-size column; `ndarray:<dtype>` with a dynamic shape is [ndim << 2 | shape dtype][shape][values]).
    The library itself cannot be installed beside datasets 5 (see exports/formats.py)."""
    index = json.loads((folder / "index.json").read_text())
    assert index["version"] == 2
    samples = []
    for shard in index["shards"]:
        assert shard["format"] == "mds" and shard["compression"] is None and shard["column_names"] == ["tokens"]
        dtype = np.dtype(shard["column_encodings"][0].split(":")[1])
        data = (folder / shard["raw_data"]["basename"]).read_bytes()
        assert len(data) == shard["raw_data"]["bytes"]
        count = int(np.frombuffer(data[:4], np.uint32)[0])
        offsets = np.frombuffer(data[4:4 + 4 * (count + 1)], np.uint32)
        assert count == shard["samples"] and offsets[-1] == len(data)
        assert json.loads(data[4 + 4 * (count + 1):offsets[0]]) == {key: shard[key] for key in (
            "column_encodings", "column_names", "column_sizes", "compression", "format", "hashes", "size_limit",
            "version")}
        for begin, end in zip(offsets[:-1], offsets[1:], strict=True):
            sample = data[begin:end]
            size = int(np.frombuffer(sample[:4], np.uint32)[0])
            body = sample[4:4 + size]
            assert len(sample) == 4 + size
            ndim, shape_code = body[0] >> 2, body[0] & 3
            shape_dtype = np.dtype(f"uint{8 << shape_code}")
            shape = np.frombuffer(body[1:1 + ndim * shape_dtype.itemsize], shape_dtype)
            values = np.frombuffer(body[1 + ndim * shape_dtype.itemsize:], dtype)
            assert ndim == 1 and shape[0] == len(values)
            samples.append(values.tolist())
    return samples


def test_the_mds_export_follows_the_published_format(phase, exported):
    _, documents = phase
    out, sidecar = exported["mds"]
    for source in sidecar["sources"]:
        assert read_mds(out / source["name"]) == documents[source["name"]]
    assert "proportion" in sidecar["usage"]["llm-foundry"]


def test_litdata_reads_the_token_stream(phase, exported):
    from litdata import StreamingDataset
    from litdata.streaming.item_loader import TokensLoader

    _, documents = phase
    out, sidecar = exported["litdata"]
    block = 16
    for source in sidecar["sources"]:
        dataset = StreamingDataset(str(out / source["name"]), item_loader=TokensLoader(block_size=block))
        flat = [token for doc in documents[source["name"]] for token in doc]
        read = [token for i in range(len(dataset)) for token in dataset[i].tolist()]
        assert read == flat[:len(flat) // block * block]
    assert "CombinedStreamingDataset" in sidecar["usage"]["litdata"]


def test_datasets_loads_the_hf_export(phase, exported):
    from datasets import load_dataset

    _, documents = phase
    out, sidecar = exported["hf"]
    for source in sidecar["sources"]:
        files = [str(out / item["path"]) for item in source["files"]]
        loaded = load_dataset("parquet", data_files=files, split="train")
        assert loaded["input_ids"] == documents[source["name"]]
        assert set(loaded["source"]) <= {source["name"]}
    assert "interleave_datasets" in sidecar["usage"]["datasets"]


def test_the_sidecar_verifies_and_a_rerun_keeps_a_matching_export(phase, exported):
    manifest, _ = phase
    out, sidecar = exported["megatron"]
    assert verify(out) == []
    assert json.loads((out / SIDECAR).read_text())["manifest_sha256"] == sidecar["manifest_sha256"]
    first = out / sidecar["sources"][0]["files"][0]["path"]
    stamp = first.stat().st_mtime_ns
    assert export(manifest, "megatron", out) == sidecar and first.stat().st_mtime_ns == stamp
    with open(first, "r+b") as handle:
        handle.write(b"\xff\xff")
    assert verify(out) == [f"{first}: sha256 differs from {SIDECAR}"]
    result = CliRunner().invoke(app, ["export", "--verify", str(out)])
    assert result.exit_code == 1 and "sha256 differs" in result.output
    assert export(manifest, "megatron", out)["sources"] == sidecar["sources"]  # a damaged export is rewritten
    assert verify(out) == []


def test_the_cli_exports_and_names_what_it_wrote(phase, tmp_path):
    manifest, documents = phase
    result = CliRunner().invoke(app, ["export", str(tmp_path / "hf"), "--manifest", str(manifest), "--format", "hf"])
    assert result.exit_code == 0, result.output
    assert "interleave_datasets" in result.output and "factory export --verify" in result.output
    bad = CliRunner().invoke(app, ["export", str(tmp_path / "x"), "--manifest", str(manifest), "--format", "tfrecord"])
    assert bad.exit_code != 0 and "unknown export format 'tfrecord'" in bad.output and "Traceback" not in bad.output
    missing = CliRunner().invoke(app, ["export", str(tmp_path / "y"), "--manifest", str(tmp_path / "none.json")])
    assert missing.exit_code != 0 and "none.json" in missing.output and "Traceback" not in missing.output
