"""Tests of the built-in demo corpus: determinism, proportions, ground truth, distinctness, file formats."""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import re
import subprocess
import sys
import tomllib
from collections import Counter, defaultdict
from fnmatch import fnmatch
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import zstandard

from datafactory.app.demo import (
    KIND_SHARES,
    KINDS,
    LANGS,
    NEAR_DUP_RANGE,
    _phrases,
    base_documents,
    jaccard,
    quality_training_examples,
    read_ground_truth,
    shingles,
    write_demo_corpus,
)
from datafactory.factory.config import load_config

N_DOCS = 3000
REPO = Path(__file__).resolve().parents[2]


def _read_records(corpus_dir: Path) -> dict[str, dict]:
    """Every input record by id, with its source file's format and its text under "text"."""
    records: dict[str, dict] = {}
    for path in sorted((corpus_dir / "data").glob("web-*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                rec = json.loads(line)
                records[rec["id"]] = {**rec, "file": path.name}
    with open(corpus_dir / "data" / "news.jsonl.zst", "rb") as fh:
        stream = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(fh), encoding="utf-8")
        for line in stream:
            rec = json.loads(line)
            records[rec["id"]] = {**rec, "file": "news.jsonl.zst"}
    table = pq.read_table(corpus_dir / "data" / "zh_forum.parquet")
    for rec in table.to_pylist():
        records[rec["id"]] = {"id": rec["id"], "text": rec["content"], "url": rec["url"], "date": rec["date"]}
        records[rec["id"]]["file"] = "zh_forum.parquet"
    return records


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    result = write_demo_corpus(root, n_docs=N_DOCS, seed=0)
    truth = read_ground_truth(result.ground_truth)
    return result, truth, _read_records(root)


def _file_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes(tmp_path):
    a = write_demo_corpus(tmp_path / "a", n_docs=500, seed=3)
    b = write_demo_corpus(tmp_path / "b", n_docs=500, seed=3)
    files_a, files_b = _file_bytes(a.root), _file_bytes(b.root)
    assert len(files_a) == len(a.data_files) + 3  # + ground_truth.jsonl, demo.yaml, evals/demo_qa.jsonl
    assert files_a == files_b
    c = write_demo_corpus(tmp_path / "c", n_docs=500, seed=4)
    assert _file_bytes(c.root)["ground_truth.jsonl"] != files_a["ground_truth.jsonl"]


def test_identical_bytes_across_processes(tmp_path):
    here = write_demo_corpus(tmp_path / "here", n_docs=300, seed=1)
    code = "import sys; from pathlib import Path; from datafactory.app.demo import write_demo_corpus; "
    code += "write_demo_corpus(Path(sys.argv[1]), n_docs=300, seed=1)"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "there")], check=True, env=env, cwd=REPO)
    assert _file_bytes(here.root) == _file_bytes(tmp_path / "there")


def test_counts_and_proportions(corpus):
    result, truth, records = corpus
    assert len(truth) == N_DOCS == len(records)
    assert sum(result.counts.values()) == N_DOCS
    kinds = Counter(row["kind"] for row in truth)
    assert kinds == Counter(result.counts)
    assert set(kinds) == set(KINDS)
    for kind, share in KIND_SHARES.items():
        assert abs(kinds[kind] - share * N_DOCS) <= 1, kind
    assert 0.57 <= kinds["clean"] / N_DOCS <= 0.63
    langs = Counter(row["lang"] for row in truth)
    assert langs == Counter(result.lang_counts)
    assert (langs["en"] + langs["zh"]) / N_DOCS > 0.6
    assert Counter(row["source"] for row in truth) == Counter(result.source_counts)


def test_ground_truth_matches_records(corpus):
    _, truth, records = corpus
    ids = [row["id"] for row in truth]
    assert len(set(ids)) == len(ids)
    assert set(ids) == set(records)
    source_file = {"web": "web-", "news": "news.jsonl.zst", "zh_forum": "zh_forum.parquet"}
    for row in truth:
        assert re.fullmatch(rf"demo-{row['source']}-\d{{6}}", row["id"])
        assert records[row["id"]]["file"].startswith(source_file[row["source"]])
        assert row["lang"] in (*LANGS, "mixed")
        expected = {"boilerplate": "lq", "spam": "lq", "short": "lq", "mixed_language": None}
        assert row["quality"] == expected.get(row["kind"], "hq")
        assert (row["duplicate_of"] is not None) == (row["kind"] in ("exact_duplicate", "near_duplicate"))
    urls = [rec["url"] for rec in records.values()]
    assert len(set(urls)) == len(urls)
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", rec["date"]) for rec in records.values())


def test_duplicates_point_to_clean_originals(corpus):
    _, truth, records = corpus
    by_id = {row["id"]: row for row in truth}
    near = []
    for row in truth:
        if row["duplicate_of"] is None:
            continue
        original = by_id[row["duplicate_of"]]
        assert original["kind"] == "clean"
        assert original["lang"] == row["lang"]
        text, original_text = records[row["id"]]["text"], records[original["id"]]["text"]
        if row["kind"] == "exact_duplicate":
            assert text == original_text
            assert records[row["id"]]["url"] != records[original["id"]]["url"]
        else:
            assert text != original_text
            near.append(jaccard(text, original_text))
    assert len(near) == Counter(row["kind"] for row in truth)["near_duplicate"]
    low, high = NEAR_DUP_RANGE
    assert all(low <= sim <= high for sim in near), (min(near), max(near))
    assert 0.82 <= sorted(near)[len(near) // 2] <= 0.92


def test_identical_texts_only_within_duplicate_clusters(corpus):
    _, truth, records = corpus
    by_text: dict[str, list[dict]] = defaultdict(list)
    for row in truth:
        by_text[records[row["id"]]["text"]].append(row)
    for rows in by_text.values():
        if len(rows) == 1 or all(row["kind"] == "short" for row in rows):  # "Page not found." recurs
            continue
        assert len({row["duplicate_of"] or row["id"] for row in rows}) == 1, rows


def test_languages(corpus):
    _, truth, records = corpus
    clean_langs = Counter(row["lang"] for row in truth if row["kind"] == "clean")
    assert set(clean_langs) == set(LANGS)
    assert len(clean_langs) >= 6
    assert all(n >= 50 for n in clean_langs.values())
    base = base_documents()
    assert len(base["en"]) >= 40 and len(base["zh"]) >= 40
    assert all(len(base[lang]) >= 12 for lang in LANGS)
    assert any(doc.script == "hant" for doc in base["zh"])
    # spot-check that texts are in their labelled language
    cjk = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
    kana = re.compile(r"[\u3040-\u30ff]")
    cyrillic = re.compile(r"[\u0400-\u04ff]")
    for row in truth:
        if row["kind"] != "clean":
            continue
        text = records[row["id"]]["text"]
        share_cjk = len(cjk.findall(text)) / len(text)
        if row["lang"] in ("zh", "ja"):
            assert share_cjk > 0.5
            assert bool(kana.search(text)) == (row["lang"] == "ja")
        else:
            assert share_cjk == 0
            assert bool(cyrillic.search(text)) == (row["lang"] == "ru")


def test_mixed_language_pages_alternate_scripts(corpus):
    _, truth, records = corpus
    for row in truth:
        if row["kind"] != "mixed_language":
            continue
        paragraphs = records[row["id"]]["text"].split("\n\n")
        assert len(paragraphs) >= 4
        assert paragraphs[0] != paragraphs[1]


def test_clean_documents_are_not_near_duplicates(corpus):
    _, truth, records = corpus
    clean = [
        records[row["id"]]["text"] for row in truth if row["kind"] in ("clean", "clean_with_boilerplate")
    ]
    assert len(set(clean)) == len(clean)
    sets = [shingles(text) for text in clean]
    index: dict[tuple, list[int]] = defaultdict(list)
    for i, sh in enumerate(sets):
        for s in sh:
            index[s].append(i)
    worst = 0.0
    for i, sh in enumerate(sets):
        shared = Counter(j for s in sh for j in index[s] if j > i)
        for j, inter in shared.items():
            worst = max(worst, inter / (len(sh) + len(sets[j]) - inter))
    assert worst < 0.4
    # and a random sample of pairs is typically far apart
    rng = random.Random(0)
    sample = [jaccard(sets[a], sets[b]) for a, b in (rng.sample(range(len(sets)), 2) for _ in range(300))]
    assert sum(sample) / len(sample) < 0.05


def test_clean_documents_have_article_length(corpus):
    _, truth, records = corpus
    for row in truth:
        if row["kind"] != "clean":
            continue
        text = records[row["id"]]["text"]
        if row["lang"] in ("zh", "ja"):
            assert len(text) >= 200
        else:
            assert len(text.split()) >= 80
        assert text.count("\n\n") >= 2


def test_junk_is_junk(corpus):
    _, truth, records = corpus
    for row in truth:
        text = records[row["id"]]["text"]
        if row["kind"] == "short":
            assert len(text) < 400 and text.count("\n") <= 1
        elif row["kind"] == "spam":
            lines = text.splitlines()
            assert len(lines) >= 5
        elif row["kind"] == "boilerplate":
            lines = text.splitlines()
            assert len(lines) >= 8
            assert sum(" | " in line for line in lines) >= 1
        elif row["kind"] == "clean_with_boilerplate":
            body, _, tail = text.rpartition("\n\n")
            assert len(body) > 3 * len(tail) / 2 and len(tail.splitlines()) >= 2


def test_files_and_config(corpus):
    result, _, _ = corpus
    names = sorted(p.name for p in result.data_files)
    assert names == sorted(
        ["news.jsonl.zst", "zh_forum.parquet", *(f"web-{i:05d}.jsonl.gz" for i in range(4))]
    )
    assert all(p.exists() and p.stat().st_size > 0 for p in result.data_files)
    schema = pq.read_schema(result.root / "data" / "zh_forum.parquet")
    assert schema.names == ["id", "content", "url", "date"]
    for path in result.root.glob("data/web-*.jsonl.gz"):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            assert list(json.loads(fh.readline())) == ["id", "text", "url", "date"]
    config = load_config(result.config)
    assert [spec.source for spec in config.inputs] == ["web", "news", "zh_forum"]
    assert config.inputs[2].text_field == "content"
    for spec in config.inputs:
        assert list(Path(config.base_dir).glob(spec.path)), spec.path
    assert config.tokenize.seq_len == 128


def test_small_and_repeated_runs(tmp_path):
    big = write_demo_corpus(tmp_path, n_docs=1200, seed=0)
    assert len(list((tmp_path / "data").glob("web-*.jsonl.gz"))) == len(big.data_files) - 2 == 4
    small = write_demo_corpus(tmp_path, n_docs=40, seed=0)
    assert len(list((tmp_path / "data").glob("web-*.jsonl.gz"))) == 1
    assert len(_read_records(tmp_path)) == 40 == sum(small.counts.values())
    one = write_demo_corpus(tmp_path / "one", n_docs=1)
    assert one.counts == {"clean": 1}
    with pytest.raises(ValueError):
        write_demo_corpus(tmp_path / "none", n_docs=0)


def test_quality_training_examples(corpus):
    _, _, records = corpus
    examples = quality_training_examples(seed=0)
    assert examples == quality_training_examples(seed=0)
    assert examples != quality_training_examples(seed=1)
    labels = Counter(label for _, label in examples)
    assert set(labels) == {"hq", "lq"}
    assert labels["hq"] == labels["lq"] >= 300
    base_texts = {doc.text for docs in base_documents().values() for doc in docs}
    corpus_texts = {rec["text"] for rec in records.values()}
    generated = [text for text, _ in examples if text not in base_texts and len(text) > 300]
    assert len(generated) > 300
    assert not [text for text in generated if text in corpus_texts]


def test_phrase_tables_cover_every_language_and_are_package_data():
    # tests/test_packaging.py loads only base_documents() from the wheel, so a data file left out of package-data
    # would pass there and fail in every installed demo: check each file against the app's package-data globs
    assert all(set(table) == set(LANGS) for table in _phrases().values())
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    globs = pyproject["tool"]["setuptools"]["package-data"]["datafactory.app"]
    files = [p.relative_to(REPO / "app").as_posix() for p in (REPO / "app" / "demo_texts").iterdir()]
    assert {"demo_texts/nav.json", "demo_texts/spam.json", "demo_texts/short.json"} <= set(files)
    assert [f for f in files if not any(fnmatch(f, glob) for glob in globs)] == []
