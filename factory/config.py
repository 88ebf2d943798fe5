"""Build configuration: a YAML file validated on load (unknown keys are errors, every stage has defaults)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(Strict):
    path: str = Field(description="glob of input files; format inferred from the extension")
    source: str = Field(description="source name used for mixing and reporting")
    text_field: str = "text"
    id_field: str = "id"
    format: Literal["jsonl", "parquet", "warc", "wet"] | None = None


class UrlFilterConfig(Strict):
    """Blocklists: a listed domain blocks itself and every subdomain; a banned word blocks any URL containing it."""

    domains: list[str] = Field(default_factory=list, description="blocked domains, e.g. [casino.example]")
    domain_files: list[str] = Field(default_factory=list, description="files of blocked domains, one per line")
    banned_words: list[str] = Field(default_factory=list, description="substrings that block a URL")
    banned_word_files: list[str] = Field(default_factory=list, description="files of banned words, one per line")


class PiiConfig(Strict):
    enabled: bool = Field(True, description="replace e-mail and IP addresses in the text")
    email_placeholder: str = "email@example.com"
    ip_placeholder: str = "192.0.2.1"  # RFC 5737 documentation range: looks like an address, is nobody's


class IngestConfig(Strict):
    max_doc_chars: int = Field(1_000_000, gt=0, description="longer documents are truncated to this")
    min_doc_chars: int = Field(1, ge=0)
    html_extractor: Literal["cascade", "resiliparse", "trafilatura"] = Field(
        "cascade",
        description="HTML main-content extractor for WARC responses: resiliparse (fast), trafilatura (accurate), "
        "or cascade (resiliparse, with trafilatura consulted only on pages where resiliparse looks unsure)",
    )
    url_filter: UrlFilterConfig = UrlFilterConfig()
    pii: PiiConfig = PiiConfig()


class LangidConfig(Strict):
    model: str | None = Field(None, description="fastText LID model path; default lid.176.ftz")
    max_chars: int = Field(2000, gt=0, description="characters of each document shown to the model")
    min_score: float = Field(0.5, ge=0, le=1, description="keep threshold for languages without their own")
    thresholds: dict[str, float] = Field(default_factory=dict, description="per-language keep thresholds")
    allow: list[str] | None = Field(None, description="languages to keep; None keeps every language")


class HeuristicsConfig(Strict):
    min_words: int = 50
    max_words: int = 100_000
    min_cjk_chars: int = 100
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_symbol_word_ratio: float = 0.1
    max_bullet_lines_ratio: float = 0.9
    max_ellipsis_lines_ratio: float = 0.3
    min_alpha_words_ratio: float = 0.8
    max_duplicate_line_fraction: float = 0.3
    max_top_2gram_fraction: float = 0.2
    min_line_punct_ratio: float = 0.12
    max_short_line_ratio: float = 0.67


class DedupConfig(Strict):
    exact: bool = True
    minhash: bool = True
    threshold: float = Field(0.8, gt=0, lt=1, description="target Jaccard similarity")
    num_perm: int = Field(128, ge=16)
    ngram: int = Field(5, ge=1, description="word n-gram size (characters for CJK use cjk_ngram)")
    cjk_ngram: int = Field(5, ge=1)
    false_positive_weight: float = 0.5
    false_negative_weight: float = 0.5
    seed: int = 1
    survivor: Literal["longest", "oldest_id"] = "longest"


class ScorerSpec(Strict):
    """One quality scorer: a model file (`factory quality train --out` writes one) and its weight in the mean."""

    model: str
    name: str | None = Field(None, description="column name in quality_scores; default: the model's file stem")
    kind: Literal["fasttext", "lm_ratio"] | None = Field(None, description="default: from the model's sidecar")
    weight: float = Field(1.0, gt=0)

    @property
    def label(self) -> str:
        return self.name or Path(self.model).stem


class QualityConfig(Strict):
    model: str | None = Field(None, description="fastText classifier (.bin); default: trained on built-in labels")
    scorers: list[ScorerSpec] = Field(
        default_factory=list, description="more scorers; quality_score is the weighted mean of all of them"
    )
    top_fraction: float = Field(0.1, gt=0, lt=1, description="share of each language in the 'high' bucket")
    bottom_fraction: float = Field(0.3, gt=0, lt=1, description="share of each language in the 'low' bucket")
    min_score: float = Field(0.0, ge=0, le=1, description="documents scoring below are dropped")

    @field_validator("scorers")
    @classmethod
    def _unique_names(cls, scorers: list[ScorerSpec]) -> list[ScorerSpec]:
        names = [spec.label for spec in scorers]
        if len(set(names)) != len(names):
            raise ValueError(f"scorer names must be unique, got {names}; set `name:` on each")
        return scorers


class TokenizerConfig(Strict):
    model: str | None = Field(None, description="existing sentencepiece model; default: train one")
    vocab_size: int = Field(8000, ge=300)
    model_type: Literal["bpe", "unigram"] = "bpe"
    character_coverage: float = 0.9995
    sample_chars: int = Field(20_000_000, gt=0, description="characters of kept text used for training")
    language_alpha: float = Field(
        0.5, ge=0, le=1, description="sample share of a language ~ (its characters)^alpha: 1 natural, 0 equal"
    )
    heldout_chars: int = Field(
        200_000, ge=0, description="characters per language, outside the sample, to measure bytes per token on"
    )


class TokenizeConfig(Strict):
    seq_len: int = Field(512, ge=8)
    rows_per_shard: int = Field(2048, ge=1)
    partitions_per_stream: int = Field(1, ge=1, description="parallel packers per source x lang x bucket")
    tokenizer: TokenizerConfig = TokenizerConfig()


class RunnerConfig(Strict):
    runner: str = "FnApiRunner"
    direct_num_workers: int = Field(2, ge=1)
    direct_running_mode: Literal["in_memory", "multi_threading", "multi_processing"] = "multi_processing"
    options: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="extra Beam pipeline options, e.g. flink_master"
    )


class ScheduleConfig(Strict):
    """When `factory serve` runs build-corpus by itself; runs can always be started from the UI or API too."""

    cron: str = Field(description="cron expression, e.g. '0 3 * * *' (03:00 every day)")
    timezone: str = Field("UTC", description="IANA time zone the cron expression is read in")

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, cron: str) -> str:
        if len(cron.split()) not in (5, 6):
            raise ValueError(f"expected a cron expression of 5 fields (minute hour day month weekday), got {cron!r}")
        return cron


class BuildConfig(Strict):
    inputs: list[InputSpec] = Field(min_length=1)
    seed: int = 0
    num_partitions: int = Field(4, ge=1, description="parquet parts written per stage")
    ingest: IngestConfig = IngestConfig()
    langid: LangidConfig = LangidConfig()
    heuristics: HeuristicsConfig = HeuristicsConfig()
    dedup: DedupConfig = DedupConfig()
    quality: QualityConfig = QualityConfig()
    tokenize: TokenizeConfig = TokenizeConfig()
    runner: RunnerConfig = RunnerConfig()
    schedule: ScheduleConfig | None = Field(None, description="cron schedule of the build-corpus deployment")
    base_dir: str = Field(".", description="directory relative input paths are resolved against")

    @field_validator("inputs")
    @classmethod
    def _unique_sources(cls, inputs: list[InputSpec]) -> list[InputSpec]:
        paths = [spec.path for spec in inputs]
        if len(set(paths)) != len(paths):
            raise ValueError("the same input path is listed twice")
        return inputs

    def stage_hash(self, stage: str) -> str:
        """Hash of everything a stage's output depends on in the config."""
        parts = {"stage": stage, "seed": self.seed, "num_partitions": self.num_partitions}
        if stage == "ingest":
            parts["inputs"] = [spec.model_dump() for spec in self.inputs]
        section = self.tokenize.tokenizer if stage == "tokenizer" else getattr(self, stage, None)
        if section is not None:
            parts[stage] = section.model_dump()
        blob = json.dumps(parts, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


class ConfigError(ValueError):
    """A config file that cannot be used, with the offending key and file named."""


def _describe(err: ValidationError, origin: str) -> str:
    lines = [f"invalid config {origin}:"]
    for item in err.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {key}: {item['msg']}")
    return "\n".join(lines)


def parse_config(data: object, origin: str = "<dict>", base_dir: str | None = None) -> BuildConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {origin}: expected a mapping with an 'inputs' list")
    if base_dir is not None and "base_dir" not in data:
        data = {**data, "base_dir": base_dir}
    try:
        return BuildConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err, origin)) from None


def load_config(path: str | Path) -> BuildConfig:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"invalid YAML in {path}: {err}") from None
    return parse_config(data, str(path), base_dir=str(path.parent.resolve()))
