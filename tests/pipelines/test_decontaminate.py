"""Decontaminate stage on real text: question / answer items cut from English and Chinese web pages of
../shared/data, planted in other pages; contaminated documents dropped (or cut in remove_span mode), clean ones
untouched, the ledger conserved, the catalog view and report filled, reruns skipped until an eval set changes."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.builds import write_stage_output
from typer.testing import CliRunner

from datafactory.app.cli import app
from datafactory.app.demo import read_ground_truth
from datafactory.app.report import write_report
from datafactory.factory.catalog import build_catalog, contamination_report, query
from datafactory.factory.config import ConfigError, parse_config
from datafactory.pipelines.registry import preflight, run_stage_named

UPSTREAM = "dedup"
# what the catalog reads of the stages before: langid's language, dedup's clusters
UPSTREAM_FIELDS = (pa.field("lang", pa.string()), pa.field("minhash_cluster", pa.string()),
                   pa.field("cluster_size", pa.int32()))


def real_pages(shared_data: Path, lang: str, count: int, seed: int) -> list[str]:
    with gzip.open(shared_data / "web_sample.jsonl.gz", "rt", encoding="utf-8") as lines:
        pages = [record["text"] for line in lines if (record := json.loads(line))["lang"] == lang
                 and 2_000 < len(record["text"]) < 20_000]
    return random.Random(seed).sample(pages, count)


def cut_item(page: str, lang: str, rng: random.Random) -> dict:
    """A question (a run of the page's words, or characters for Chinese) and its answer (what follows)."""
    if lang == "zh":
        text = "".join(page.split())
        start = rng.randrange(0, len(text) - 120)
        return {"question": text[start : start + 60], "answer": text[start + 60 : start + 66]}
    words = page.split()
    start = rng.randrange(0, len(words) - 60)
    return {"question": " ".join(words[start : start + 35]), "answer": " ".join(words[start + 35 : start + 38])}


@pytest.fixture(scope="module")
def planted(shared_data: Path, tmp_path_factory) -> tuple[Path, dict, dict[str, str]]:
    """A build whose dedup stage holds 40 clean pages and 12 pages with an eval item planted (6 English, 6 Chinese,
    half of them noisy copies); the eval set is written beside. Returns (build, config dict, truth by doc_id)."""
    rng = random.Random(7)
    root = tmp_path_factory.mktemp("decontaminate")
    rows, truth, items = [], {}, []
    for lang in ("en", "zh"):
        pages = real_pages(shared_data, lang, 40, 1)
        sources = [cut_item(page, lang, rng) | {"id": f"{lang}-{number}"} for number, page in enumerate(pages[:6])]
        # web_sample holds natural near-duplicates: a page that already contains an item is no clean host
        hosts = [page for page in pages[6:] if not any(squeeze(item["question"]) in squeeze(page) for item in sources)]
        for number, item in enumerate(sources):
            items.append(item)
            copy = item["question"] if number % 2 else item["question"].upper().replace(" ", " ,  ")
            host = hosts[number]
            at = len(host) // 2
            doc_id = f"planted-{lang}-{number}"
            rows.append(page_row(doc_id, host[:at] + "\n" + copy + "\n" + host[at:], lang))
            truth[doc_id] = item["id"]
        rows += [page_row(f"clean-{lang}-{number}", host, lang) for number, host in enumerate(hosts[6:26])]
    evals = root / "evals.jsonl"
    evals.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items), encoding="utf-8")
    build = root / "build"
    write_stage_output(UPSTREAM, build, rows, fields=UPSTREAM_FIELDS)
    config = {"inputs": [{"path": "unused", "source": "web"}], "runner": {"direct_running_mode": "in_memory"},
              "base_dir": str(root),
              "decontaminate": {"eval_sets": [{"path": "evals.jsonl", "name": "qa", "fields": ["question", "answer"]}]}}
    return build, config, truth


def squeeze(text: str) -> str:
    return "".join(text.split())


def page_row(doc_id: str, text: str, lang: str) -> dict:
    return {"doc_id": doc_id, "source": "web", "input_file": "web.jsonl", "location": doc_id, "url": None,
            "date": None, "meta": "{}", "text": text, "lang": lang, "keep": True, "reason": None, "detail": None}


def run_decontaminate(build: Path, config: dict):
    return run_stage_named("decontaminate", parse_config(config), build)


def stage_rows(build: Path) -> dict[str, dict]:
    return {row["doc_id"]: row for row in pq.read_table(build / "stages" / "decontaminate").to_pylist()}


def test_planted_items_are_dropped_and_clean_pages_kept(planted):
    build, config, truth = planted
    result = run_decontaminate(build, config)
    rows = stage_rows(build)
    dropped = {doc_id: row["item_id"] for doc_id, row in rows.items() if not row["keep"]}
    assert dropped == truth
    assert all(rows[doc_id]["reason"] == "contaminated" and rows[doc_id]["detail"] >= 0.5 for doc_id in truth)
    assert not any(row["contaminated"] for doc_id, row in rows.items() if doc_id not in truth)
    ledger = pq.read_table(build / "ledger").to_pylist()
    assert sorted((row["doc_id"], row["stage"], row["status"]) for row in ledger) == sorted(
        (doc_id, "decontaminate", "dropped") for doc_id in truth)
    counts = result.counts
    assert counts["documents"] == len(rows) and counts["kept"] == len(rows) - len(truth)
    assert counts["index"]["items"] == {"qa": 12} and counts["index"]["entries"] > 12 * 20


def test_catalog_view_and_contamination_report(planted):
    build, config, truth = planted
    run_decontaminate(build, config)
    build_catalog(build)
    _, found = query(build, "SELECT eval_set, count(*) FROM decontaminate WHERE contaminated GROUP BY ALL")
    assert found == [("qa", len(truth))]
    columns, report = contamination_report(build)
    assert columns[:4] == ["eval_set", "items", "items_found", "documents"]
    assert report[0][:4] == ("qa", 12, 12, 12) and "en" in report[0][5] and "zh" in report[0][5]
    printed = CliRunner().invoke(app, ["decontaminate-report", str(build)], terminal_width=200)
    assert printed.exit_code == 0 and "qa" in printed.output and "web" in printed.output
    page = write_report(build).read_text(encoding="utf-8")
    assert "Contamination by eval set" in page and "items found in the corpus" in page


def test_rerun_skips_until_an_eval_set_changes(planted, tmp_path):
    build, config, truth = planted
    run_decontaminate(build, config)
    assert run_decontaminate(build, config).skipped
    evals = Path(config["base_dir"]) / "evals.jsonl"
    original = evals.read_text(encoding="utf-8")
    try:
        first, *rest = original.splitlines(keepends=True)
        evals.write_text("".join(rest), encoding="utf-8")  # one item fewer: its planted page is clean now
        again = run_decontaminate(build, config)
        assert not again.skipped and again.counts["kept"] == len(stage_rows(build)) - len(truth) + 1
    finally:
        evals.write_text(original, encoding="utf-8")
    indexes = list((build / "cache" / "decontaminate").iterdir())
    assert len(indexes) == 2  # content-addressed: one per eval-set content, each reused when it comes back
    assert not run_decontaminate(build, config).skipped
    assert len(list((build / "cache" / "decontaminate").iterdir())) == 2


def test_remove_span_mode_cuts_the_item_and_keeps_the_page(planted, tmp_path):
    build, config, truth = planted
    copy = tmp_path / "build"
    write_stage_output(UPSTREAM, copy, pq.read_table(build / "stages" / UPSTREAM).to_pylist(), fields=UPSTREAM_FIELDS)
    run_decontaminate(copy, config | {"decontaminate": config["decontaminate"] | {"mode": "remove_span",
                                                                                  "margin_chars": 20}})
    rows = stage_rows(copy)
    upstream = {row["doc_id"]: row["text"] for row in pq.read_table(copy / "stages" / UPSTREAM).to_pylist()}
    for doc_id in truth:
        row = rows[doc_id]
        assert row["keep"] and row["contaminated"] and row["removed_chars"] > 0
        assert len(row["text"]) < len(upstream[doc_id]) - 50
    assert all(rows[doc_id]["text"] == upstream[doc_id] for doc_id in rows if doc_id not in truth)
    assert not (copy / "ledger").exists() or pq.read_table(copy / "ledger").num_rows == 0


def test_a_broken_eval_set_fails_preflight_naming_file_and_line(planted, tmp_path):
    _, config, _ = planted
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "a", "answer": "b"}\n{"question": oops}\n')
    spec = {"path": str(bad), "name": "bad", "fields": ["question"]}
    with pytest.raises(ConfigError, match=r"bad.jsonl: line 2: malformed JSON"):
        preflight(parse_config(config | {"inputs": [{"path": str(bad), "source": "web"}],
                                         "decontaminate": {"eval_sets": [spec]}}))


def test_the_demo_build_drops_its_planted_quiz_pages(reference_build, small_corpus):
    planted = {row["id"]: row["eval_item"] for row in read_ground_truth(small_corpus / "ground_truth.jsonl")
               if row["eval_item"]}
    seen = stage_rows_of_view(reference_build)
    assert planted and {doc_id for doc_id in planted if doc_id in seen}
    for doc_id, row in seen.items():
        assert row["contaminated"] == (doc_id in planted), doc_id
        if doc_id in planted:
            assert row["item_id"] == planted[doc_id] and not row["keep"]


def stage_rows_of_view(build: Path) -> dict[str, dict]:
    columns, rows = query(build, "SELECT doc_id, contaminated, item_id, keep FROM decontaminate")
    return {row[0]: dict(zip(columns, row, strict=True)) for row in rows}


def test_without_eval_sets_every_document_is_clean_and_no_text_is_read(small_corpus, reference_build, tmp_path,
                                                                          monkeypatch):
    """No eval set: the stage keeps everyone with the decontaminator's clean verdict, without reading any text."""
    import yaml
    from support.builds import copy_build

    from datafactory.factory.config import load_config

    out = copy_build(reference_build, tmp_path / "build")
    (out / "stages" / "decontaminate" / "_SUCCESS.json").unlink()
    config = yaml.safe_load((small_corpus / "test.yaml").read_text()) | {"decontaminate": {}}
    path = small_corpus / "no_eval_sets.yaml"
    path.write_text(yaml.safe_dump(config))

    def no_text(*args, **kwargs):
        raise AssertionError("the text was read")

    monkeypatch.setattr("datafactory.pipelines.common.TextCursor", no_text)
    result = run_stage_named("decontaminate", load_config(path), out)
    assert result.counts["kept"] == result.counts["documents"] > 0
    rows = pq.read_table(out / "stages" / "decontaminate",
                         columns=["contaminated", "eval_set", "item_id", "score", "removed_chars"]).to_pylist()
    assert {tuple(row.values()) for row in rows} == {(False, None, None, 0.0, 0)}
