"""The stage registry is the one list of stages: order checked, names written nowhere else, and a stage added there
alone runs in the Prefect flow, resumes, and shows in the catalog, the report and `factory stages`."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest
from support.toy_stage import NAME, REASON, with_toy_stage
from typer.testing import CliRunner

from datafactory.app.cli import app
from datafactory.app.report import stage_rank
from datafactory.factory.catalog import query
from datafactory.factory.config import load_config
from datafactory.factory.markers import read_marker
from datafactory.pipelines import ingest, registry
from datafactory.pipelines.inputs import resolve_inputs

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("factory", "filters", "pipelines", "mixtures", "trainer", "flows", "app")
# Stage names that are also everyday words in prose ("the quality of", "signals") are left out of the scan.
COMMON_WORDS = {"quality", "signals"}


def test_every_stage_comes_after_its_upstream():
    registry.check_order(registry.STAGES)
    backwards = (registry.stage("langid"), registry.stage("ingest"))
    with pytest.raises(ValueError, match="'langid' is listed before its upstream stage"):
        registry.check_order(backwards)


def test_an_unknown_stage_name_says_which_exist():
    with pytest.raises(KeyError, match="the stages are ingest, langid"):
        registry.stage("nope")


def stage_lists(path: Path, names: list[str]) -> list[str]:
    """Where a module names three or more stages together: in one string (prose included) or in one literal
    tuple / list / set of strings. Docstrings count too: a stage list in prose goes stale the same way."""
    word = re.compile(r"\b(" + "|".join(names) + r")\b")
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            named = set(word.findall(node.value))
        elif isinstance(node, ast.Tuple | ast.List | ast.Set):
            named = {item.value for item in node.elts if isinstance(item, ast.Constant) and item.value in names}
        else:
            continue
        if len(named) >= 3:
            found.append(f"{path.relative_to(PACKAGE_ROOT)}:{node.lineno} {sorted(named)}")
    return found


def test_no_module_but_the_registry_lists_the_stages():
    names = [name for name in registry.stage_names() if name not in COMMON_WORDS]
    offenders = [hit for layer in LAYERS for path in sorted((PACKAGE_ROOT / layer).rglob("*.py"))
                 if path.name != "registry.py" for hit in stage_lists(path, names)]
    assert offenders == []


def test_a_registered_stage_runs_in_the_flow_and_shows_everywhere(small_corpus, tmp_path, monkeypatch):
    from datafactory.flows.build import build_corpus

    monkeypatch.setattr(registry, "STAGES", with_toy_stage(registry.STAGES))
    hashed = []
    real_digest = ingest.inputs_digest
    monkeypatch.setattr(ingest, "inputs_digest", lambda files: hashed.append(files) or real_digest(files))
    out = tmp_path / "build"

    first = build_corpus(str(small_corpus / "test.yaml"), str(out))
    assert [result.stage for result in first] == registry.stage_names()
    assert NAME in [result.stage for result in first] and not any(result.skipped for result in first)
    assert len(hashed) == 1  # the input bytes are read once to decide what to skip, not once per mechanism

    columns, rows = query(out, f"SELECT count(*), min(chars) FROM {NAME}")
    assert rows[0][0] > 0 and rows[0][1] > 0
    _, dropped = query(out, f"SELECT count(*) FROM ledger WHERE stage = '{NAME}' AND reason = '{REASON}'")
    assert dropped[0][0] > 0
    _, leaked = query(out, f"SELECT count(*) FROM quality WHERE length(doc_id) > 0 AND doc_id IN "
                      f"(SELECT doc_id FROM {NAME} WHERE NOT keep)")
    assert leaked[0][0] == 0  # quality read the toy stage's survivors
    assert stage_rank("dedup") < stage_rank(NAME) < stage_rank("quality")
    listing = CliRunner().invoke(app, ["stages"])
    assert listing.exit_code == 0 and NAME in listing.output

    again = build_corpus(str(small_corpus / "test.yaml"), str(out))
    assert all(result.skipped for result in again)  # resumed from the markers, the toy stage's included
    assert len(hashed) == 2


def test_a_stage_is_handed_its_first_upstream_and_a_digest_of_all(small_corpus, reference_build):
    """What a run function reads comes from its registry entry, not from the stage's module."""
    seen = []
    probe = dataclasses.replace(registry.stage("tokenize"), run=seen.append)
    probe.execute(load_config(small_corpus / "test.yaml"), reference_build)
    assert seen[0].reads == "quality" and seen[0].previous.stage_dir == reference_build / "stages" / "quality"
    marker = read_marker(reference_build / "stages" / "tokenize")
    assert seen[0].input_hash == marker["input_hash"]  # the digest the finished build recorded: tokenize is done


def test_auto_runs_small_inputs_in_process_and_large_ones_in_workers():
    from datafactory.factory.config import RunnerConfig

    auto = RunnerConfig(auto_in_memory_bytes=1000)
    assert auto.for_input(1000).direct_running_mode == "in_memory"
    assert auto.for_input(1001).direct_running_mode == "multi_processing"
    assert RunnerConfig(direct_running_mode="multi_threading").for_input(10).direct_running_mode == "multi_threading"


def test_a_text_free_pipeline_runs_in_process_only_where_auto_chose_the_mode():
    from datafactory.factory.config import RunnerConfig

    settled = RunnerConfig(auto_in_memory_bytes=1000).for_input(1001)
    assert settled.direct_running_mode == "multi_processing"
    assert settled.for_text_free_pipeline().direct_running_mode == "in_memory"
    chosen = RunnerConfig(direct_running_mode="multi_processing")
    assert chosen.for_text_free_pipeline().direct_running_mode == "multi_processing"  # the user's choice stands


def test_auto_is_settled_per_stage_by_the_text_it_reads(small_corpus, reference_build):
    """A stage after the rules reads a fraction of the input: "auto" sizes each stage by what its upstream kept."""
    import duckdb

    stages = reference_build / "stages"
    texts = duckdb.sql(f"SELECT sum(strlen(text)), count(*) FROM '{stages}/ingest/part-*.parquet'").fetchall()[0]
    kept = {name: read_marker(stages / name)["counts"]["kept"] for name in ("ingest", "heuristics")}
    config = load_config(small_corpus / "test.yaml")
    read_by = {name: registry.stage(name).text_bytes(config, reference_build) for name in ("langid", "dedup")}
    # an estimate from Parquet's uncompressed sizes: text + offsets, less what dictionary pages share
    assert 0.8 * texts[0] <= read_by["langid"] <= texts[0] + 8 * texts[1]
    assert read_by["dedup"] == read_by["langid"] * kept["heuristics"] // kept["ingest"]
    assert registry.stage("ingest").text_bytes(config, reference_build) == sum(  # the first stage: the input files
        Path(path).stat().st_size for path, _ in resolve_inputs(config))
