"""Tokenize throughput per core: the tokenize stage vs bare sentencepiece and vs datatrove's DocumentTokenizer.

    .venv/bin/python benchmarks/tokenize_throughput.py [--data ../shared/data] [--peer-python .venv-bench/bin/python]

All on `web_sample.jsonl.gz` (5,178 documents, 27 MB), one process pinned to one core (sentencepiece's encode(list)
spreads over threads), 8k-piece BPE; after one untimed turn each, best of 3 rounds in which all take turns:
- bare: sentencepiece `encode(list)` in batches of 256 (ids only);
- stage kernel: what the stage's DoFns do per document, in one process — batch encode, pack into seq_len+1 rows
  with document starts, write the Arrow IPC shard and hash it;
- stage (Beam): the real `tokenize` stage on the in-process runner, from a quality-stage output to shards and
  index (includes Beam's fixed start-up cost, which a 27 MB input does not amortise);
- datatrove: `DocumentTokenizer` (HF `tokenizers` BPE, 8k, trained on the same text) through its
  `LocalPipelineExecutor`, run in the peer venv `.venv-bench` (datatrove[processing]==0.10.1 plus `orjson`,
  which its JsonlReader needs and its extra lacks; see benchmarks/requirements-peers.txt).
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import sentencepiece as spm
from timing import best_interleaved, pin_to_one_core  # benchmarks/ is on sys.path when a benchmark runs as a script

from datafactory.factory.config import TokenizerConfig, parse_config
from datafactory.factory.markers import write_marker
from datafactory.factory.records import stage_schema
from datafactory.factory.shards import shard_schema, token_dtype, write_shard
from datafactory.pipelines.common import StagePaths, write_parquet_atomic
from datafactory.pipelines.tokenize import pack
from datafactory.pipelines.tokenizer import BOS_ID, EOS_ID, PAD_ID, describe, tokenizer_dir, train_sentencepiece

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
BATCH, SEQ_LEN, VOCAB = 256, 2048, 8000
PEER_SCRIPT = r"""
import json, sys, time, tempfile
from pathlib import Path
from tokenizers import Tokenizer, models, pre_tokenizers, trainers, decoders
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.tokens import DocumentTokenizer

data, work = sys.argv[1], Path(sys.argv[2])
texts = [json.loads(line)["text"] for line in open(data, encoding="utf-8")]
tok = Tokenizer(models.BPE(unk_token=None))
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=8000, special_tokens=["<|endoftext|>"],
                                                 initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
tok.save(str(work / "tokenizer.json"))
best = float("inf")
for attempt in range(3):
    out = work / f"out{attempt}"
    pipeline = [JsonlReader(str(Path(data).parent), glob_pattern=Path(data).name),
                DocumentTokenizer(str(out), local_working_dir=str(work / f"tmp{attempt}"),
                                  tokenizer_name_or_path=str(work / "tokenizer.json"), eos_token="<|endoftext|>",
                                  shuffle_documents=False)]
    start = time.perf_counter()
    LocalPipelineExecutor(pipeline, tasks=1, workers=1, logging_dir=str(work / f"logs{attempt}")).run()
    best = min(best, time.perf_counter() - start)
tokens = sum(len(tok.encode(t).ids) + 1 for t in texts)
print(json.dumps({"seconds": best, "tokens": tokens}))
"""


def read_texts(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line)["text"] for line in lines if line.strip()]


def bare_encode(processor: spm.SentencePieceProcessor, texts: list[str]) -> int:
    batches = (processor.encode(texts[start:start + BATCH]) for start in range(0, len(texts), BATCH))
    return sum(len(ids) for batch in batches for ids in batch)


def stage_kernel(processor: spm.SentencePieceProcessor, texts: list[str], out: Path) -> None:
    """Encode in batches, pack with document boundaries, write and hash one Arrow IPC shard."""
    ids = [row.view(np.uint32) for start in range(0, len(texts), BATCH)
           for row in processor.encode(texts[start:start + BATCH], return_type="numpy", num_threads=1)]
    rows = pack(ids, SEQ_LEN + 1, BOS_ID, EOS_ID, PAD_ID)
    dtype = token_dtype(processor.vocab_size())
    write_shard(out, type(rows)(rows.tokens.astype(dtype), rows.doc_starts, rows.valid_len),
                shard_schema(SEQ_LEN, dtype, {"source": "web", "lang": "en", "bucket": "mid"}))


def fake_upstream(build: Path, texts: list[str]) -> None:
    """The tokenize stage's inputs: one quality-stage part holding every document as kept, the tokenizer, and
    both stages' completion markers."""
    schema = stage_schema(None, [pa.field("lang", pa.string()), pa.field("bucket", pa.string())])
    rows = [{"doc_id": f"d{i:06d}", "source": "web", "input_file": "web_sample", "location": f"line {i + 1}",
             "text": text, "lang": "en", "bucket": "mid", "keep": True} for i, text in enumerate(texts)]
    quality = StagePaths(build, "quality")
    write_parquet_atomic(pa.Table.from_pylist(rows, schema=schema), quality.stage_dir / "part-00000-of-00001.parquet")
    write_marker(build, quality.stage_dir, "quality", "benchmark", "benchmark", {}, quality.parts())
    tokenizer = StagePaths(build, "tokenizer")
    tokenizer.stage_dir.mkdir(parents=True)
    write_marker(build, tokenizer.stage_dir, "tokenizer", "benchmark", "benchmark", {}, [])


def beam_stage(build: Path) -> None:
    from datafactory.pipelines.registry import run_stage_named

    config = parse_config({"inputs": [{"path": "x", "source": "web"}], "num_partitions": 1,
                           "runner": {"direct_running_mode": "in_memory"},
                           "tokenize": {"seq_len": SEQ_LEN, "rows_per_shard": 4096}})
    for marker in (build / "stages" / "tokenize").glob("_SUCCESS*"):
        marker.unlink()
    run_stage_named("tokenize", config, build)


def peer(peer_python: str, texts: list[str], work: Path) -> dict | None:
    if not Path(peer_python).exists():
        print(f"(datatrove skipped: {peer_python} not found)")
        return None
    data = work / "peer" / "docs.jsonl"
    data.parent.mkdir(parents=True)
    data.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts), encoding="utf-8")
    done = subprocess.run([peer_python, "-c", PEER_SCRIPT, str(data), str(data.parent)], capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--peer-python", default=str(REPO / ".venv-bench" / "bin" / "python"))
    args = parser.parse_args()
    pinned = pin_to_one_core()
    texts = read_texts(args.data / "web_sample.jsonl.gz")
    megabytes = sum(len(text.encode("utf-8")) for text in texts) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build = work / "build"
        model = tokenizer_dir(build) / "tokenizer.model"
        model.parent.mkdir(parents=True)
        lines = [line for text in texts for line in text.split("\n") if line.strip()]
        train_sentencepiece(lines, model, TokenizerConfig(vocab_size=VOCAB))
        describe(build)
        processor = spm.SentencePieceProcessor(model_file=str(model))
        tokens = bare_encode(processor, texts)
        fake_upstream(build, texts)
        timings = best_interleaved({
            "bare sentencepiece encode(list)": lambda: bare_encode(processor, texts),
            "stage kernel (encode+pack+write)": lambda: stage_kernel(processor, texts, work / "k.arrow"),
            "stage on Beam (in-process runner)": lambda: beam_stage(build),
        }, rounds=3)
        result = peer(args.peer_python, texts, work)
    print(f"{len(texts):,} documents, {megabytes:.1f} MB, {tokens:,} sentencepiece tokens, {pinned}\n")
    for name, seconds in timings.items():
        print(f"{name:<36}{tokens / seconds / 1e6:>7.2f} M tokens/s{megabytes / seconds:>7.1f} MB/s")
    bare = timings["bare sentencepiece encode(list)"]
    print(f"\nstage kernel overhead over bare encode: {timings['stage kernel (encode+pack+write)'] / bare - 1:+.0%}")
    print(f"Beam stage overhead over bare encode:  {timings['stage on Beam (in-process runner)'] / bare - 1:+.0%}")
    if result:
        rate = result["tokens"] / result["seconds"]
        print(f"{'datatrove DocumentTokenizer (HF BPE)':<36}{rate / 1e6:>7.2f} M tokens/s"
              f"{megabytes / result['seconds']:>7.1f} MB/s")
        ratio = result["seconds"] / timings["stage on Beam (in-process runner)"]
        print(f"ours (Beam stage) / datatrove, MB/s: {ratio:.2f}x")


if __name__ == "__main__":
    main()
