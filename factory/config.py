"""Build configuration: a YAML file validated on load (unknown keys are errors, every stage has defaults)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from datafactory.factory.errors import UserError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # "128" and true are not a seq_len


class InputSpec(Strict):
    path: str = Field(description="glob of input files; format inferred from the extension")
    # A source names shard folders, manifest entries and report rows: one path segment of plain characters, never
    # "..", so it cannot lead a file outside the build directory.
    source: str = Field(pattern=r"^[\w.-]{1,100}$",
                        description="source name used for mixing and reporting: letters, digits, _ . - (1-100)")
    text_field: str = "text"
    id_field: str = "id"
    format: Literal["jsonl", "parquet", "warc", "wet"] | None = None

    @field_validator("source")
    @classmethod
    def _one_path_segment(cls, source: str) -> str:
        if source in (".", ".."):
            raise ValueError(f"source {source!r} would name a folder outside the build's shard folders")
        return source


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
    """Oversized input has two rules: a record (JSONL line, WARC record) over max_record_bytes is never held in memory
    and becomes an invalid row; a document's text over max_doc_chars is cut to that length (meta records how long
    it was)."""

    max_doc_chars: int = Field(1_000_000, gt=0, description="longer documents are truncated to this")
    max_record_bytes: int = Field(
        64 << 20, gt=0, description="larger raw records (a JSONL line, a WARC record) are skipped as invalid"
    )
    min_doc_chars: int = Field(1, ge=0)
    html_extractor: Literal["cascade", "resiliparse", "trafilatura"] = Field(
        "cascade",
        description="HTML main-content extractor for WARC responses: resiliparse (fast), trafilatura (accurate), "
        "or cascade (resiliparse, with trafilatura consulted only on pages where resiliparse looks unsure)",
    )
    url_filter: UrlFilterConfig = UrlFilterConfig()
    pii: PiiConfig = PiiConfig()
    blocklists: list[str] = Field([], description="files of doc_ids to drop (reason flagged_by_training), e.g. "
                                  "written by `factory trace --blocklist` and reviewed")


# Languages lid.176 confuses with each other (measured on the UD sentences of benchmarks/langid_eval.py): closely
# related pairs and the Cyrillic South/East Slavic languages. lid.176 labels Norwegian "no".
CONFUSABLE_LANGUAGES = (("af", "nl"), ("cs", "sk"), ("da", "nb", "nn", "no", "sv"),
                        ("be", "bg", "mk", "ru", "uk"), ("bs", "hr", "sr"), ("gl", "pt"))


class LangidConfig(Strict):
    model: str | None = Field(None, description="fastText LID model path; default lid.176.ftz")
    max_chars: int = Field(2000, gt=0, description="characters of each document shown to the model")
    min_score: float = Field(0.5, ge=0, le=1, description="keep threshold for languages without their own")
    thresholds: dict[str, float] = Field(default_factory=dict, description="per-language keep thresholds")
    allow: list[str] | None = Field(None, description="languages to keep; None keeps every language")
    second_opinion: bool = Field(True, description="lingua settles confusable languages and short texts")
    confusable: list[list[str]] = Field(
        default_factory=lambda: [list(group) for group in CONFUSABLE_LANGUAGES],
        description="groups fastText confuses: when it picks a member, lingua chooses within the group")
    short_chars: int = Field(40, ge=0, description="below this many characters lingua chooses between fastText's two "
                                                   "best guesses")
    cantonese: bool = Field(True, description="Chinese text dense in Cantonese-only characters is yue, not zh")


# Stop words and thresholds per language. English: Gopher's stop words (Rae et al. 2021, "Scaling Language Models",
# appendix A.1.1). Others: FineWeb-2's per-language configs (huggingface/fineweb-2, configs/{lang}_{script}.yml) and
# its filtering step (fineweb-2-pipeline.py: duplicate-paragraph and duplicate-line-character fractions and the
# short-line ratio switched off, FineWeb's duplicate-line-character ratio raised to 0.1, C4's rules not applied).
_FINEWEB2_OFF = ["gopher_dup_para_frac", "gopher_dup_para_char_frac", "gopher_dup_line_char_frac",
                 "fineweb_short_line_ratio", "c4_lorem_ipsum", "c4_curly_bracket", "c4_min_sentences"]
# C4's line endings plus the full-width marks that end Chinese and Japanese sentences (for C4's line removal).
_CJK_LINE_ENDS = ".?!\"'。！？．”」』"


def _fineweb2(stop_words: str, word_length: tuple[float, float], alpha: float, top: tuple[float, ...],
              dup: tuple[float, ...], dup_line: float, line_punct: float, list_ratio: float, **extra: object) -> dict:
    """One language's FineWeb-2 thresholds and stop words, with the rules its pipeline leaves out disabled."""
    return {
        "stop_words": stop_words.split(), "min_mean_word_length": word_length[0],
        "max_mean_word_length": word_length[1], "min_alpha_words_ratio": alpha,
        **{f"max_top_{n}gram_frac": value for n, value in zip((2, 3, 4), top, strict=True)},
        **{f"max_dup_{n}gram_frac": value for n, value in zip(range(5, 11), dup, strict=True)},
        "max_dup_line_frac": dup_line, "min_line_punct_ratio": line_punct, "max_list_ratio": list_ratio,
        "max_char_dup_ratio": 0.1, "disable": _FINEWEB2_OFF, **extra,
    }


HEURISTICS_LANGUAGE_DEFAULTS: dict[str, dict] = {
    "en": {"stop_words": ["the", "be", "to", "of", "and", "that", "have", "with"]},
    "de": _fineweb2("der und die in von im den des mit das er dem als wurde für", (0, 15), 0.774,
                    (0.169, 0.153, 0.137), (0.141, 0.134, 0.126, 0.117, 0.108, 0.098), 0.263, 0.0, 0.152),
    "fr": _fineweb2("de la le et à en l' des du les est d' un une il dans par au", (2, 11), 0.812,
                    (0.161, 0.149, 0.134), (0.15, 0.141, 0.131, 0.121, 0.111, 0.1), 0.264, 0.1, 0.185),
    "es": _fineweb2("de la en el y a que del los se por un con una las su", (4, 14), 0.825,
                    (0.077, 0.097, 0.112), (0.152, 0.137, 0.123, 0.114, 0.107, 0.099), 0.265, 0.3, 0.171),
    "ru": _fineweb2("в и на с года по году из был к не от что за для его как а он также до после", (3, 11), 0.713,
                    (0.184, 0.164, 0.146), (0.168, 0.156, 0.145, 0.133, 0.121, 0.109), 0.322, 0.231, 0.139),
    # Chinese is measured on jieba words, as FineWeb-2 does (spaCy's jieba segmenter).
    "zh": _fineweb2("的 年 在 月 是 和 日 了 於 · 為 有 被 人 中 为 他 與 後 也 而 由", (1, 5), 0.735,
                    (0.256, 0.201, 0.171), (0.198, 0.182, 0.167, 0.154, 0.14, 0.127), 0.287, 0.106, 0.178,
                    word_split="jieba", c4_end_punctuation=_CJK_LINE_ENDS),
    # Japanese is measured on characters (FineWeb-2 segments with SudachiPy, which we do not ship).
    "ja": _fineweb2("の に を は た て が と で 年 し ・ 月 れ さ", (1, 5), 0.759,
                    (0.121, 0.129, 0.145), (0.307, 0.283, 0.264, 0.248, 0.234, 0.223), 0.375, 0.167, 0.162,
                    word_split="chars", c4_end_punctuation=_CJK_LINE_ENDS),
}


class HeuristicRules(Strict):
    """Thresholds, and how to measure, for one language; the defaults are the published English values.

    Rule names listed in ``disable`` are not applied.
    """

    word_split: Literal["spaces", "jieba", "chars"] = Field(
        "spaces", description="spaCy-style words, jieba words (Chinese) or characters (Japanese)"
    )
    stop_words: list[str] = Field(default_factory=list, description="Gopher stop words; none skips that rule")
    disable: list[str] = Field(default_factory=list, description="rule names not to apply")
    # Gopher quality: Rae et al. 2021, appendix A.1.1 (datatrove pipeline/filters/gopher_quality_filter.py agrees).
    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3
    max_mean_word_length: float = 10
    max_hash_ratio: float = 0.1
    max_ellipsis_ratio: float = 0.1
    max_bullet_lines_ratio: float = 0.9
    max_ellipsis_lines_ratio: float = 0.3
    min_alpha_words_ratio: float = 0.8
    min_stop_words: int = 2
    # Gopher repetition: Rae et al. 2021, table A1 (as in datatrove pipeline/filters/gopher_repetition_filter.py).
    max_dup_para_frac: float = 0.3
    max_dup_para_char_frac: float = 0.2
    max_dup_line_frac: float = 0.3
    max_dup_line_char_frac: float = 0.2
    max_top_2gram_frac: float = 0.2
    max_top_3gram_frac: float = 0.18
    max_top_4gram_frac: float = 0.16
    max_dup_5gram_frac: float = 0.15
    max_dup_6gram_frac: float = 0.14
    max_dup_7gram_frac: float = 0.13
    max_dup_8gram_frac: float = 0.12
    max_dup_9gram_frac: float = 0.11
    max_dup_10gram_frac: float = 0.10
    # C4: Raffel et al. 2020, section 2.2, as tensorflow_datasets text/c4_utils.py (clean_page) implements it.
    c4_terminal_punct: bool = Field(True, description="remove lines not ending in terminal punctuation")
    c4_end_punctuation: str = ".?!\"'"
    c4_min_words_per_line: int = 3
    c4_max_word_length: int = 1000
    min_sentences: int = 5
    max_lorem_ipsum_lines: int = 0
    max_curly_bracket_lines: int = 0
    # FineWeb: Penedo et al. 2024, "The FineWeb Datasets", its custom filters; the values of datatrove's
    # pipeline/filters/fineweb_quality_filter.py, which FineWeb ran (duplicate-line characters: 0.01 there, 0.1 in
    # the paper's text; FineWeb-2's pipeline notes it raised 0.01 to 0.1).
    short_line_length: int = 30
    min_line_punct_ratio: float = 0.12
    max_short_line_ratio: float = 0.67
    max_char_dup_ratio: float = 0.01
    max_list_ratio: float = 0.3


# Per-language overrides: every HeuristicRules field, optional; a field left out (None) keeps the top-level value.
# Built through the model's metaclass (what a class statement does) so the field list cannot drift from the above.
HeuristicsLanguage = type(Strict)(
    "HeuristicsLanguage",
    (Strict,),
    {
        "__module__": __name__,
        "__qualname__": "HeuristicsLanguage",
        "__doc__": "One language's overrides of the top-level heuristics settings; unset fields inherit them.",
        "__annotations__": {name: info.annotation | None for name, info in HeuristicRules.model_fields.items()},
        **dict.fromkeys(HeuristicRules.model_fields),
    },
)


# The settings that change what is measured (how text splits into words and lines, which lines C4 keeps);
# every other HeuristicRules field is a threshold, applied to stored signals by the cheap `heuristics` stage.
MEASURING_FIELDS = frozenset({"word_split", "stop_words", "c4_terminal_punct", "c4_end_punctuation",
                              "c4_min_words_per_line", "c4_max_word_length", "short_line_length"})


class HeuristicsConfig(HeuristicRules):
    """Heuristic rule sets; the top-level values apply to every language without its own entry in ``languages``."""

    rule_sets: list[Literal["gopher_quality", "gopher_repetition", "c4", "fineweb"]] = Field(
        default_factory=lambda: ["gopher_quality", "gopher_repetition", "c4", "fineweb"]
    )
    c4_remove_lines: bool = Field(False, description="kept documents lose the lines C4's line filter removes")
    languages: dict[str, HeuristicsLanguage] = Field(  # type: ignore[valid-type]
        default_factory=lambda: {lang: HeuristicsLanguage(**v) for lang, v in HEURISTICS_LANGUAGE_DEFAULTS.items()}
    )

    @field_validator("languages", mode="before")
    @classmethod
    def _over_defaults(cls, languages: object) -> object:
        """A language's entry refines the built-in one for that language instead of replacing it."""
        if not isinstance(languages, dict):
            return languages
        merged = {lang: dict(values) for lang, values in HEURISTICS_LANGUAGE_DEFAULTS.items()}
        for lang, values in languages.items():
            given = values.model_dump(exclude_none=True) if isinstance(values, BaseModel) else values
            merged[lang] = {**merged.get(lang, {}), **given} if isinstance(given, dict) else given
        return merged

    def measuring_settings(self) -> dict:
        """What the `signals` stage's output depends on: rule sets, C4 line removal, the languages with settings
        of their own, and each one's measuring fields."""
        return self._settings_part(measuring=True)

    def threshold_settings(self) -> dict:
        """What the `heuristics` decision depends on beyond the measured signals: every other setting."""
        return self._settings_part(measuring=False)

    def _settings_part(self, measuring: bool) -> dict:
        """The settings on one side of the measuring / threshold split, top level and per language (the
        `languages` keys themselves go to both: they decide which entry measures and judges a document)."""
        dump = self.model_dump()
        top_measuring = MEASURING_FIELDS | {"rule_sets", "c4_remove_lines"}
        languages = {lang: {k: v for k, v in entry.items() if (k in MEASURING_FIELDS) == measuring}
                     for lang, entry in dump.pop("languages").items()}
        return {k: v for k, v in dump.items() if (k in top_measuring) == measuring} | {"languages": languages}

    def for_language(self, lang: str | None) -> HeuristicRules:
        """The settings for ``lang``: its entry in ``languages`` over the top level; disabled rules add up."""
        top = self.model_dump(include=set(HeuristicRules.model_fields))
        entry = self.languages.get(lang) if lang else None
        if entry is None:
            return HeuristicRules(**top)
        own = entry.model_dump(exclude_none=True)
        disable = sorted({*top["disable"], *own.pop("disable", [])})
        return HeuristicRules(**{**top, **own, "disable": disable})


class ParagraphDedupConfig(Strict):
    """Lines or paragraphs that recur across many surviving documents (navigation, banners, footers) are removed.

    Off by default: it rewrites text, and the demo corpus reuses whole paragraphs of a small pool of base texts.
    """

    enabled: bool = False
    unit: Literal["line", "paragraph"] = Field("line", description="paragraph = block between blank lines")
    min_documents: int = Field(5, ge=2, description="a unit in at least this many surviving documents is removed")
    min_chars: int = Field(10, ge=1, description="units shorter than this (normalised) are never counted")
    min_words: int = Field(50, ge=0, description="documents left with fewer words are dropped (CJK: characters)")


class DedupConfig(Strict):
    exact: bool = True
    normalization: Literal["none", "whitespace", "standard"] = Field(
        "standard", description="exact-key normalisation; standard ignores case, punctuation and digit values"
    )
    minhash: bool = True
    threshold: float = Field(0.75, gt=0, lt=1, description="target Jaccard similarity")
    num_perm: int = Field(128, ge=16)
    ngram: int = Field(5, ge=1, le=10, description="word n-gram size (characters for CJK use cjk_ngram)")
    cjk_ngram: int = Field(5, ge=1, le=10)
    # Missing a duplicate costs more than a spurious candidate (verification removes those): with 128 permutations
    # these weights give 21 bands x 6 rows, which catch 98% of pairs at Jaccard 0.75 and 99.8% at 0.8 (datatrove's and
    # FineWeb's 14 x 8: 60% and 82%; `bands: 14, rows: 8, verify: false` reproduces them).
    false_positive_weight: float = Field(0.02, ge=0)
    false_negative_weight: float = Field(0.98, ge=0)
    bands: int | None = Field(None, ge=1, description="LSH bands; default: datasketch's optimum for the weights")
    rows: int | None = Field(None, ge=1, validate_default=True, description="rows per band; set with bands")
    verify: bool = Field(True, description="drop candidate pairs whose estimated Jaccard is below verify_threshold")
    # A band shared by documents below the threshold is chance (each pair gets 21 tries of 6 rows): 0.65 rejects
    # those yet sits ~2.6 standard errors (0.038 at 0.75, 128 permutations) under the threshold.
    verify_threshold: float = Field(0.65, gt=0, le=1, description="estimated Jaccard a candidate pair must reach")
    seed: int = 1
    survivor: Literal["longest", "oldest_id", "earliest_date"] = "longest"
    max_rounds: int = Field(40, ge=1, description="connected-component rounds before the stage gives up")
    # The in-process runner holds a whole shuffle in memory; band keys (one per band per document) are dedup's largest.
    shuffle_budget_mb: int = Field(
        256, ge=1, description="band and exact keys grouped per pipeline; more run in several key-range passes"
    )
    paragraphs: ParagraphDedupConfig = ParagraphDedupConfig()

    @field_validator("rows")
    @classmethod
    def _bands_fit(cls, rows: int | None, info) -> int | None:  # info: pydantic ValidationInfo
        bands, num_perm = info.data.get("bands"), info.data.get("num_perm", 0)
        if (bands is None) != (rows is None):
            raise ValueError("set bands and rows together (or neither, for datasketch's optimum)")
        if bands and rows and bands * rows > num_perm:
            raise ValueError(f"bands x rows = {bands * rows} exceeds num_perm = {num_perm}")
        return rows


class EvalSetSpec(Strict):
    """One evaluation set whose items must not reach the shards: JSON Lines (.jsonl, optionally .gz / .zst) or
    Parquet, one item per record."""

    path: str
    name: str = Field(pattern=r"^[\w.-]+$", description="how reports and the decontaminate view name the set")
    fields: list[str] = Field(min_length=1, description="the item's fields to look for (question, choices, answer)")
    id_field: str = Field("id", description="the item's id; items without one are named by their line or row")


class SubstringsConfig(Strict):
    """Spans of min_tokens or more tokens found in two or more surviving documents are cut from every copy but the
    first (by dedup.survivor), in the dedup stage (Lee et al. 2022). A token is a whitespace-separated word or one
    CJK character, so the CJK threshold is min_tokens characters (about 3 bytes each). Off by default: it rewrites
    text; `preset: web` turns it on."""

    enabled: bool = False
    min_tokens: int = Field(50, ge=4, description="the shortest repeated span removed, in tokens")
    merge_gap_tokens: int = Field(3, ge=0, description="removals at most this many tokens apart merge into one")
    min_tokens_left: int = Field(50, ge=0, description="documents left with fewer tokens are dropped "
                                 "(short_after_substring_dedup)")


class DecontaminateConfig(Strict):
    """Documents holding an evaluation item are dropped (or lose the matched spans). An item's fields are found by
    their n-grams (words; characters for CJK-dominant text) after NFKC, case, punctuation and whitespace folding;
    a field is contaminating when matched n-grams cover min_overlap of its tokens (fields shorter than their n-gram
    but at least the minimum must be found whole; shorter ones, like an answer letter, are not looked for)."""

    eval_sets: list[EvalSetSpec] = []
    ngram: int = Field(13, ge=4, le=64, description="words per n-gram (GPT-3's janitor: 13)")
    # Chinese needs about 1.5 characters for what an English word says, so 20 characters stand for 13 words.
    cjk_ngram: int = Field(20, ge=4, le=96, description="characters per n-gram in CJK-dominant text")
    min_words: int = Field(8, ge=4, description="fields shorter than ngram but this long are matched whole")
    cjk_min_chars: int = Field(12, ge=4, description="the same for CJK-dominant fields, in characters")
    min_overlap: float = Field(0.5, ge=0, le=1, description="share of a field's tokens matched n-grams must cover; "
                               "0: any n-gram hit (GPT-3, datatrove)")
    mode: Literal["drop", "remove_span"] = Field("drop", description="drop the document, or cut the matched spans")
    margin_chars: int = Field(200, ge=0, description="remove_span: characters cut on each side of a span")

    @model_validator(mode="after")
    def _consistent(self) -> DecontaminateConfig:
        names = [spec.name for spec in self.eval_sets]
        if len(set(names)) != len(names):
            raise ValueError(f"decontaminate.eval_sets: names must be unique, got {names}")
        if self.min_words > self.ngram or self.cjk_min_chars > self.cjk_ngram:
            raise ValueError("decontaminate: min_words / cjk_min_chars must not exceed ngram / cjk_ngram")
        return self


class ScorerSpec(Strict):
    """One quality scorer: a model file (`factory quality train --out` writes one) and its weight in the mean."""

    model: str
    name: str | None = Field(None, description="column name in quality_scores; default: the model's file stem")
    kind: Literal["blend", "fasttext", "lm_ratio", "combiner"] | None = Field(
        None, description="default: from the model's sidecar")
    weight: float = Field(1.0, gt=0)

    @property
    def label(self) -> str:
        return self.name or Path(self.model).stem


class ReferenceConfig(Strict):
    """The DCLM recipe inside a build: a classifier trained on the named sources' documents (positives) against a
    seeded sample of the build's other documents (negatives), then used as a scorer."""

    sources: list[str] = Field(min_length=1, description="input sources (inputs[].source) whose documents are positive")
    negatives_per_positive: float = Field(1.0, gt=0, description="negatives sampled per positive")
    max_positives: int = Field(200_000, ge=10, description="positives beyond this are sampled down")
    kind: Literal["fasttext", "lm_ratio", "combiner"] = "fasttext"
    weight: float = Field(1.0, gt=0, description="its weight in quality_score")
    heldout_fraction: float = Field(0.1, gt=0, lt=1, description="examples kept out of training to measure it")


class QualityConfig(Strict):
    reference: ReferenceConfig | None = Field(None, description="train the build's own classifier (DCLM recipe)")
    model: str | None = Field(None, description="fastText classifier (.bin); default: the built-in model")
    scorers: list[ScorerSpec] = Field(
        default_factory=list, description="more scorers; quality_score is the weighted mean of all of them"
    )
    top_fraction: float = Field(0.1, gt=0, lt=1, description="share of each language in the 'high' bucket")
    bottom_fraction: float = Field(0.3, gt=0, lt=1, description="share of each language in the 'low' bucket")
    min_score: float = Field(0.0, ge=0, le=1, description="documents scoring below are dropped")

    @model_validator(mode="after")
    def _room_for_mid(self) -> QualityConfig:
        if self.top_fraction + self.bottom_fraction >= 1:
            raise ValueError(f"top_fraction {self.top_fraction} + bottom_fraction {self.bottom_fraction} leave no "
                             "'mid' bucket: their sum must stay below 1")
        return self

    @property
    def uses_default_model(self) -> bool:
        """No model, scorer or reference named: the build scores with the built-in default model."""
        return not (self.model or self.scorers or self.reference)

    @model_validator(mode="after")
    def _unique_names(self) -> QualityConfig:
        """Every score in `quality_scores` keeps its own name: the model's stem, each scorer's, `reference`."""
        names = ([Path(self.model).stem] if self.model else []) + [spec.label for spec in self.scorers]
        names += ["reference"] if self.reference else []
        if len(set(names)) != len(names):
            raise ValueError(f"scorer names must be unique, got {names}; set `name:` on each")
        return self


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
    shuffle: bool = Field(False, description="pack each stream's documents in an order shuffled by `seed` "
                          "(a hash of seed and doc_id) instead of doc_id order; neighbours in a row then come from "
                          "unrelated files and sites")
    tokenizer: TokenizerConfig = TokenizerConfig()


# Up to this much text read, "auto" runs a stage inside the build's own process: starting worker processes costs
# 1.5-5 s a stage, which a second core wins back only on more text than this (BENCHMARKS.md, "Running mode").
AUTO_IN_MEMORY_BYTES = 64 << 20


BEAM_RUNNERS = ("FnApiRunner", "DirectRunner", "FlinkRunner", "SparkRunner", "DataflowRunner", "PortableRunner",
                "PrismRunner")  # the names Beam resolves itself; any other runner by its class's dotted path


class RunnerConfig(Strict):
    runner: str = "FnApiRunner"
    direct_num_workers: int = Field(2, ge=1)
    direct_running_mode: Literal["auto", "in_memory", "multi_threading", "multi_processing"] = Field(
        "auto", description="auto: each stage in_memory when it reads up to auto_in_memory_bytes of text, else "
        "multi_processing"
    )
    auto_in_memory_bytes: int = Field(AUTO_IN_MEMORY_BYTES, ge=0)
    options: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="extra Beam pipeline options, e.g. flink_master"
    )
    _settled_from_auto: bool = PrivateAttr(False)

    @field_validator("runner")
    @classmethod
    def _known_runner(cls, runner: str) -> str:
        if runner in BEAM_RUNNERS or re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", runner):
            return runner
        raise ValueError(f"unknown Beam runner {runner!r}: one of {', '.join(BEAM_RUNNERS)}, or a runner class's "
                         "dotted path (e.g. apache_beam.runners.dask.dask_runner.DaskRunner)")

    def for_input(self, input_bytes: int) -> RunnerConfig:
        """The running mode "auto" settles to for this much input (the outputs are the same bytes either way)."""
        if self.direct_running_mode != "auto":
            return self
        mode = "in_memory" if input_bytes <= self.auto_in_memory_bytes else "multi_processing"
        settled = self.model_copy(update={"direct_running_mode": mode})
        settled._settled_from_auto = True
        return settled

    def for_text_free_pipeline(self) -> RunnerConfig:
        """The mode for a pipeline of a stage that reads no text (dedup's key groupings): in process where "auto"
        chose the stage's mode, as for a stage reading none (the outputs are the same bytes either way)."""
        return self.model_copy(update={"direct_running_mode": "in_memory"}) if self._settled_from_auto else self

    @property
    def local_workers(self) -> int | None:
        """Worker count of the in-process runners; None where a cluster decides (Dask, Flink, Spark, Dataflow)."""
        if self.runner not in {"FnApiRunner", "DirectRunner"}:
            return None
        return 1 if self.direct_running_mode == "in_memory" else self.direct_num_workers


class ScheduleConfig(Strict):
    """When `factory serve` runs build-corpus by itself; runs can always be started from the UI or API too."""

    cron: str = Field(description="cron expression, e.g. '0 3 * * *' (03:00 every day)")
    timezone: str = Field("UTC", description="IANA time zone the cron expression is read in")

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, cron: str) -> str:
        fields = cron.split()
        if len(fields) not in (5, 6):
            raise ValueError(f"expected a cron expression of 5 fields (minute hour day month weekday), got {cron!r}")
        for text, (name, low, high) in zip(fields, CRON_FIELDS, strict=False):
            if not cron_field_ok(text, low, high, named=name in ("month", "weekday")):
                raise ValueError(f"cron {cron!r}: {name} field {text!r} is not *, a number {low}-{high}, a range, "
                                 "a list or a step")
        return cron

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, timezone: str) -> str:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {timezone!r} (an IANA name, e.g. Europe/Berlin)") from None
        return timezone


CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("weekday", 0, 7),
               ("second", 0, 59))
_CRON_PART = re.compile(r"(\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/([0-9]+))?")


def cron_field_ok(text: str, low: int, high: int, named: bool) -> bool:
    """One cron field: comma-separated parts, each `*`, a value or a range, optionally `/step`; months and weekdays
    may be named (JAN, MON)."""
    for part in text.split(","):
        match = _CRON_PART.fullmatch(part)
        if match is None or match[2] == "0":
            return False
        values = [] if match[1] == "*" else match[1].split("-")
        for value in values:
            if not (value.isdigit() and low <= int(value) <= high or named and value.isalpha() and len(value) == 3):
                return False
    return True


class BuildConfig(Strict):
    inputs: list[InputSpec] = Field(min_length=1)
    seed: int = 0
    num_partitions: int = Field(4, ge=1, description="parquet parts written per stage")
    ingest: IngestConfig = IngestConfig()
    langid: LangidConfig = LangidConfig()
    heuristics: HeuristicsConfig = HeuristicsConfig()
    dedup: DedupConfig = DedupConfig()
    substrings: SubstringsConfig = SubstringsConfig()
    decontaminate: DecontaminateConfig = DecontaminateConfig()
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

    @model_validator(mode="after")
    def _reference_sources_exist(self) -> BuildConfig:
        reference = self.quality.reference
        known = {spec.source for spec in self.inputs}
        if reference is not None and (unknown := sorted(set(reference.sources) - known)):
            raise ValueError(f"quality.reference.sources names {unknown}, which no input has as its source "
                             f"(the sources are {sorted(known)})")
        return self

    def resolve_path(self, path: str) -> str:
        """A path from the config: URLs and absolute paths as they are, relative ones against base_dir."""
        if "://" in path:
            return path
        return str((Path(self.base_dir) / path).resolve())

    def named_files(self) -> dict[str, str]:
        """Every model or list file the config names, by its key (e.g. ``quality.scorers[1].model``), resolved."""
        named = {"langid.model": self.langid.model, "quality.model": self.quality.model,
                 "tokenize.tokenizer.model": self.tokenize.tokenizer.model}
        named |= {f"quality.scorers[{i}].model": spec.model for i, spec in enumerate(self.quality.scorers)}
        named |= {f"ingest.blocklists[{i}]": path for i, path in enumerate(self.ingest.blocklists)}
        named |= {f"decontaminate.eval_sets[{i}].path": spec.path
                  for i, spec in enumerate(self.decontaminate.eval_sets)}
        url_filter = self.ingest.url_filter
        named |= {f"ingest.url_filter.domain_files[{i}]": path for i, path in enumerate(url_filter.domain_files)}
        named |= {f"ingest.url_filter.banned_word_files[{i}]": path
                  for i, path in enumerate(url_filter.banned_word_files)}
        return {key: self.resolve_path(path) for key, path in named.items() if path}


class ConfigError(UserError, ValueError):
    """A config file that cannot be used, with the offending key and file named."""


def check_named_files(config: BuildConfig, origin: str = "config") -> None:
    """Fail before any work when a file the config names is missing (remote URLs are checked when read)."""
    for key, path in config.named_files().items():
        if "://" not in path and not Path(path).is_file():
            raise ConfigError(f"invalid config {origin}:\n  {key}: file not found: {path}")


def describe_validation_error(err: ValidationError, origin: str, what: str = "config") -> str:
    """One line per bad key, e.g. "invalid config demo.yaml:\n  tokenize.seq_len: ...", for configs and policies."""
    lines = [f"invalid {what} {origin}:"]
    for item in err.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {key}: {item['msg']}")
    return "\n".join(lines)


def parse_config(data: object, origin: str = "<dict>", base_dir: str | None = None) -> BuildConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {origin}: expected a mapping with an 'inputs' list")
    if base_dir is not None and "base_dir" not in data:
        data = {**data, "base_dir": base_dir}
    if "preset" in data:
        data = with_preset(data, origin)
    try:
        return BuildConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err, origin)) from None


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(text: str) -> object:
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


PRESETS = Path(__file__).parent / "presets"


def preset_names() -> list[str]:
    return sorted(path.stem for path in PRESETS.glob("*.yaml"))


def with_preset(data: dict, origin: str) -> dict:
    """The config's keys laid over the preset it names (`preset: web`), mapping by mapping."""
    name = data["preset"]
    if name not in preset_names():
        raise ConfigError(f"invalid config {origin}:\n  preset: no preset {name!r}; the presets are "
                          f"{', '.join(preset_names())}")
    preset = read_yaml((PRESETS / f"{name}.yaml").read_text(encoding="utf-8"))
    return merge_mappings(preset, {key: value for key, value in data.items() if key != "preset"})


def merge_mappings(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        both_mappings = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = merge_mappings(merged[key], value) if both_mappings else value
    return merged


def load_yaml_model(path: str | Path, model: type[M], what: str) -> M:
    """A YAML file validated into `model`: a missing file, bad YAML, a non-mapping or a bad value is a one-line
    ConfigError naming the file (and the key)."""
    try:
        data = read_yaml(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{what} file not found: {path}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"invalid YAML in {what} {path}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"invalid {what} {path}: expected a mapping of {what} keys")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err, str(path), what)) from None


def load_config(path: str | Path) -> BuildConfig:
    path = Path(path)
    try:
        data = read_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"invalid YAML in {path}: {err}") from None
    return parse_config(data, str(path), base_dir=str(path.parent.resolve()))
