"""Tokenizer step: trains sentencepiece on a language-balanced, deterministic sample of kept text (or adopts one).

Bound: the sample (config `tokenize.tokenizer.sample_chars`) is gathered in the driver process.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import sentencepiece as spm
import xxhash

from datafactory.factory.atomic import atomic_path, write_text_atomic
from datafactory.factory.config import ConfigError, TokenizerConfig
from datafactory.factory.errors import UserError
from datafactory.factory.shards import sha256_file
from datafactory.filters.sentencepiece_train import train_model
from datafactory.pipelines.common import StagePaths, StageResult, StageRun, iter_kept_tables, run_stage

MODEL_NAME = "tokenizer.model"
INFO_NAME = "tokenizer.json"
ADDS = (f"{MODEL_NAME} (DIR/tokenizer/)",)
UNK_ID, BOS_ID, EOS_ID, PAD_ID = 0, 1, 2, 3


@dataclass(frozen=True)
class TokenizerInfo:
    path: str  # relative to the build dir
    sha256: str
    vocab_size: int
    bos_id: int
    eos_id: int
    pad_id: int
    bytes_per_token: dict[str, float] = field(default_factory=dict)  # per language, on held-out documents


def tokenizer_dir(build_dir: Path) -> Path:
    return build_dir / "tokenizer"


def load_info(build_dir: Path) -> TokenizerInfo:
    return TokenizerInfo(**json.loads((tokenizer_dir(build_dir) / INFO_NAME).read_text(encoding="utf-8")))


@dataclass(frozen=True)
class Candidate:
    order: int  # a seeded hash: sampling in this order is a deterministic random sample
    doc_id: str
    lang: str
    chars: int


READ_ROWS = 1024  # rows of a part held at once while the sample is chosen and read


def candidates(files: list[Path], seed: int) -> list[Candidate]:
    """Every kept document as (hash order, id, base language, length), the parts streamed a batch at a time."""
    found = []
    for table in (table for path in files for table in iter_kept_tables(path, READ_ROWS)):
        lengths = pc.utf8_length(table["text"]).to_pylist()
        for doc_id, lang, length in zip(table["doc_id"].to_pylist(), table["lang"].to_pylist(), lengths, strict=True):
            order = xxhash.xxh64_intdigest(f"{seed}:{doc_id}".encode())
            found.append(Candidate(order, doc_id, (lang or "und").split("-")[0], length))
    return sorted(found, key=lambda c: (c.order, c.doc_id))


def language_budgets(pool: list[Candidate], total_chars: int, alpha: float) -> dict[str, int]:
    """Characters per language: shares proportional to (available characters)^alpha, so small languages get
    more than their natural share (alpha < 1) and the vocabulary covers them; unused budget is not moved."""
    available: dict[str, int] = {}
    for candidate in pool:
        available[candidate.lang] = available.get(candidate.lang, 0) + candidate.chars
    weights = {lang: chars**alpha for lang, chars in available.items() if chars}
    total = sum(weights.values())
    return {lang: int(total_chars * weight / total) for lang, weight in sorted(weights.items())}


HELDOUT_MAX_SHARE = 0.1  # of a language's text: a small corpus must not lose most of its sample to measurement


def split_sample(
    pool: list[Candidate], settings: TokenizerConfig
) -> tuple[set[str], dict[str, list[str]]]:
    """(training sample ids, held-out ids per language). In hash order, each language first sets aside up to
    heldout_chars (at most a tenth of its text) for measuring bytes per token, then fills its sample budget."""
    budgets = language_budgets(pool, settings.sample_chars, settings.language_alpha)
    available: dict[str, int] = {}
    for candidate in pool:
        available[candidate.lang] = available.get(candidate.lang, 0) + candidate.chars
    held_cap = {lang: min(settings.heldout_chars, HELDOUT_MAX_SHARE * available[lang]) for lang in budgets}
    used, held = dict.fromkeys(budgets, 0), dict.fromkeys(budgets, 0)
    chosen: set[str] = set()
    heldout: dict[str, list[str]] = {lang: [] for lang in budgets}
    for candidate in pool:
        lang = candidate.lang
        if lang not in budgets:
            continue
        if held[lang] + candidate.chars <= held_cap[lang]:
            heldout[lang].append(candidate.doc_id)
            held[lang] += candidate.chars
        elif used[lang] < budgets[lang]:
            chosen.add(candidate.doc_id)
            used[lang] += candidate.chars
    return chosen, {lang: ids for lang, ids in heldout.items() if ids}


def read_texts(files: list[Path], wanted: set[str]) -> dict[str, str]:
    texts: dict[str, str] = {}
    value_set = pa.array(sorted(wanted), type=pa.string())
    for table in (table for path in files for table in iter_kept_tables(path, READ_ROWS)):
        table = table.filter(pc.is_in(table["doc_id"], value_set=value_set))
        texts.update(zip(table["doc_id"].to_pylist(), table["text"].to_pylist(), strict=True))
    return texts


def bytes_per_token(model: Path, files: list[Path], heldout: dict[str, list[str]]) -> dict[str, float]:
    """UTF-8 bytes per token on each language's held-out documents: the tokenizer's compression."""
    processor = spm.SentencePieceProcessor(model_file=str(model))
    texts = read_texts(files, {doc_id for ids in heldout.values() for doc_id in ids})
    result = {}
    for lang, ids in sorted(heldout.items()):
        sample = [texts[doc_id] for doc_id in ids]
        tokens = sum(map(len, processor.encode(sample)))
        result[lang] = round(sum(len(text.encode("utf-8")) for text in sample) / tokens, 3) if tokens else 0.0
    return result


def sample_lines(files: list[Path], chosen: set[str]) -> list[str]:
    """One paragraph per line, documents in id order, so training input is the same on every run."""
    texts = read_texts(files, chosen)
    return [line.strip() for doc_id in sorted(texts) for line in texts[doc_id].split("\n") if line.strip()]


class EmptyCorpus(UserError):
    """Nothing survived the filters to train a tokenizer on: the user's data or thresholds, not a bug."""


def train_sentencepiece(lines: list[str], out: Path, config: TokenizerConfig) -> None:
    """The build's tokenizer, byte-identical for the same lines (its sha256 is in every shard's metadata). A vocabulary
    the sample cannot fill, or one smaller than the characters it must cover, is the config's to fix: one line."""
    try:
        train_model(lines, out, vocab_size=config.vocab_size, model_type=config.model_type,
                    character_coverage=config.character_coverage, split_digits=True,
                    unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID, pad_id=PAD_ID)
    except RuntimeError as err:
        if "Vocabulary size" not in str(err):
            raise
        reason = str(err).removeprefix("sentencepiece training failed: ")
        raise ConfigError(f"tokenize.tokenizer.vocab_size {config.vocab_size} does not fit this corpus: {reason}"
                          ) from None


def describe(build_dir: Path, compression: dict[str, float] | None = None) -> TokenizerInfo:
    model = tokenizer_dir(build_dir) / MODEL_NAME
    processor = spm.SentencePieceProcessor(model_file=str(model))
    info = TokenizerInfo(
        path=str(model.relative_to(build_dir)), sha256=sha256_file(model), vocab_size=processor.vocab_size(),
        bos_id=processor.bos_id(), eos_id=processor.eos_id(), pad_id=processor.pad_id(),
        bytes_per_token=compression or {},
    )
    target = tokenizer_dir(build_dir) / INFO_NAME
    write_text_atomic(target, json.dumps(asdict(info), indent=2, sort_keys=True) + "\n")
    return info


def train_from_build(build_dir: Path, documents: StagePaths, settings: TokenizerConfig, seed: int) -> dict:
    """Train on a language-balanced sample of the kept documents; measure on held-out ones."""
    files = documents.parts()
    chosen, heldout = split_sample(candidates(files, seed), settings)
    lines = sample_lines(files, chosen)
    if not lines:
        raise EmptyCorpus(f"no document reached the tokenizer stage of {build_dir}: every one was dropped before it "
                          f"(the funnel: factory stats --build {build_dir} \"SELECT stage, status, reason, count(*) "
                          "FROM ledger GROUP BY ALL\"); loosen the filters, or name a trained model in "
                          "tokenize.tokenizer.model")
    model = tokenizer_dir(build_dir) / MODEL_NAME
    train_sentencepiece(lines, model, settings)
    compression = bytes_per_token(model, files, heldout)
    info = describe(build_dir, compression)
    return {"trained": True, "sample_documents": len(chosen), "sample_lines": len(lines),
            "vocab_size": info.vocab_size, "bytes_per_token": compression}


def run(job: StageRun) -> StageResult:
    config, build_dir = job.config, job.build_dir
    settings = config.tokenize.tokenizer
    out_dir = tokenizer_dir(build_dir)

    def body() -> dict:
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        if not settings.model:
            return train_from_build(build_dir, job.previous, settings, config.seed)
        with atomic_path(out_dir / MODEL_NAME) as tmp:
            shutil.copyfile(config.resolve_path(settings.model), tmp)
        return {"trained": False, "vocab_size": describe(build_dir).vocab_size}

    return run_stage(job, body, lambda: sorted(out_dir.glob("tokenizer.*")))
