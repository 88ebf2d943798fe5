"""The build report: a demo build's page has every chart and runnable SQL, missing views become notes, and
headless Chromium draws every chart without a console error (screenshot saved under test-artifacts/)."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.builds import copy_build

from datafactory.app.report import REPORT_NAME, write_report
from datafactory.factory.catalog import build_catalog

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
SECTIONS = ("funnel", "languages", "quality", "dedup", "decontamination", "tokens", "mixtures", "training")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync", "--hide-scrollbars",
                  # every host name fails to resolve: the page must need nothing from the network
                  "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=20000")
MAX_SCREENSHOT_HEIGHT = 16000
# Put first in <head>: records console errors, uncaught errors and failed loads, then (once Plotly has drawn)
# what each chart div holds, as attributes of <html> that --dump-dom prints.
PROBE = """<script>
(function () {
  var root = document.documentElement, errors = [];
  function record(message) { errors.push(message); root.setAttribute("data-console-errors", JSON.stringify(errors)); }
  var consoleError = console.error;
  console.error = function () {
    record("console.error: " + Array.prototype.join.call(arguments, " "));
    consoleError.apply(console, arguments);
  };
  window.addEventListener("error", function (e) {
    record(e.message ? "uncaught: " + e.message + " at " + e.filename + ":" + e.lineno
                     : "failed to load: " + (e.target.src || e.target.href || e.target.tagName));
  }, true);
  window.addEventListener("unhandledrejection", function (e) { record("unhandled rejection: " + e.reason); });
  window.addEventListener("load", function () {
    setTimeout(function () {
      var charts = Array.prototype.map.call(document.querySelectorAll(".plotly-graph-div"), function (div) {
        var marks = Array.prototype.filter.call(div.querySelectorAll("g.point path, path.js-line"),
          function (path) { return (path.getAttribute("d") || "").length > 4; });
        var box = div.getBoundingClientRect();
        return {id: div.id, plotted: div.classList.contains("js-plotly-plot"), traces: (div._fullData || []).length,
                marks: marks.length, width: Math.round(box.width), height: Math.round(box.height)};
      });
      root.setAttribute("data-charts", JSON.stringify(charts));
      root.setAttribute("data-page-height", String(root.scrollHeight));
      root.setAttribute("data-probe", "done");
    }, 1000);
  });
})();
</script>"""


# ----------------------------------------------------------------------------- a demo build


@pytest.fixture(scope="module")
def demo_build(reference_build, tmp_path_factory) -> Path:
    """A copy of the session's small demo build, re-planned with this module's policy, a few training steps, then
    the report as `factory report` writes it."""
    from datafactory.mixtures.planner import Policy, plan
    from datafactory.trainer.train import train

    out = copy_build(reference_build, tmp_path_factory.mktemp("report") / "build")
    steps, batch_size = 6, 4
    written = plan(out, Policy(name="report-test", total_tokens=steps * batch_size * 64, warmup_fraction=0.2,
                               anneal_fraction=0.34))
    build_catalog(out)
    train(written["stable"], model="test", out_dir=out / "runs" / "demo", batch_size=batch_size, compile=False)
    build_catalog(out)  # the run's trace views, as `factory report` does
    write_report(out)
    return out


def page_of(build: Path) -> str:
    return (build / REPORT_NAME).read_text(encoding="utf-8")


def sql_blocks(page: str) -> list[str]:
    return [html.unescape(block) for block in re.findall(r'<pre class="sql">(.*?)</pre>', page, flags=re.S)]


def notes(page: str) -> list[str]:
    return [html.unescape(note) for note in re.findall(r'<p class="note">(.*?)</p>', page, flags=re.S)]


def test_demo_report_has_every_chart(demo_build):
    page = page_of(demo_build)
    for section in SECTIONS:
        assert f'<section id="{section}">' in page, section
        assert f'id="chart-{section}-0"' in page, f"no chart drawn in {section}: {notes(page)}"
    assert not [note for note in notes(page) if "not available" in note or "could not draw" in note], notes(page)
    assert page.count('class="plotly-graph-div"') >= 9


def test_every_shown_sql_runs_in_duckdb(demo_build):
    blocks = sql_blocks(page_of(demo_build))
    assert len(blocks) >= 10
    with duckdb.connect(str(demo_build / "catalog.duckdb"), read_only=True) as con:
        for sql in blocks:
            assert con.execute(sql).fetchall(), sql


def test_page_is_self_contained(demo_build):
    page = page_of(demo_build)
    assert re.search(r"<script[^>]*\ssrc=", page) is None
    assert re.search(r"<link\b", page) is None
    assert "plotly.js v" in page  # the library itself is inlined
    markup = re.sub(r"<script>.*?</script>", "", page, flags=re.S)  # plotly.js mentions URLs it never loads
    assert not re.search(r"(src|href)=[\"']https?://", markup)


# ----------------------------------------------------------------------------- partial builds


def write_parquet(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def ledger_rows(n: int = 20) -> list[dict]:
    rows = []
    for i in range(n):
        status, stage, reason = [("kept", "tokenize", None), ("dropped", "heuristics", "gopher_min_words"),
                                 ("duplicate", "dedup", "exact_duplicate"), ("invalid", "ingest", "bad json")][i % 4]
        rows.append({"doc_id": f"d{i:03d}", "source": "web", "input_file": "web.jsonl", "location": f"line {i + 1}",
                     "status": status, "stage": stage, "reason": reason,
                     "duplicate_of": "d000" if status == "duplicate" else None})
    return rows


def test_missing_views_become_notes(tmp_path):
    write_parquet(tmp_path / "ledger" / "part-00000.parquet", ledger_rows())
    build_catalog(tmp_path)
    write_report(tmp_path)
    page = page_of(tmp_path)
    assert 'id="chart-funnel-0"' in page and 'id="chart-funnel-1"' in page
    found = notes(page)
    assert not [note for note in found if "could not draw" in note], found
    for view in ("langid", "quality", "dedup", "shards", "plan"):
        assert any("not available" in note and view in note for note in found), (view, found)
    assert any("no training run yet" in note for note in found)


def test_plan_without_some_columns_still_draws(tmp_path):
    write_parquet(tmp_path / "ledger" / "part-00000.parquet", ledger_rows())
    write_parquet(tmp_path / "manifests" / "plan.parquet", [
        {"phase": "stable", "source": "web", "weight": 0.7, "planned_tokens": 700},
        {"phase": "stable", "source": "news", "weight": 0.3, "planned_tokens": 300},
        {"phase": "anneal", "source": "web:high", "weight": 1.0, "planned_tokens": 100},
    ])
    build_catalog(tmp_path)
    write_report(tmp_path)
    page = page_of(tmp_path)
    assert 'id="chart-mixtures-0"' in page
    assert any("plan view lacks epochs" in note for note in notes(page))


def test_run_without_lr_schedule_takes_phases_from_the_log(tmp_path):
    write_parquet(tmp_path / "ledger" / "part-00000.parquet", ledger_rows())
    build_catalog(tmp_path)
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    lines = [{"step": s, "phase": "stable" if s < 8 else "anneal", "lr": 1e-3, "loss": 9 - s / 4, "tokens": 64 * s,
              "loss_per_source": {"web": 9 - s / 4}, "tokens_per_s": 1.0} for s in range(1, 11)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    write_report(tmp_path)
    page = page_of(tmp_path)
    assert 'id="chart-training-0"' in page
    assert any("phases from the logged `phase` field" in note for note in notes(page))


def test_no_catalog_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="factory build"):
        write_report(tmp_path)


# ----------------------------------------------------------------------------- a real browser


@pytest.fixture(scope="module")
def chromium() -> str:
    for name in CHROMIUM_NAMES:
        if found := shutil.which(name):
            return found
    reason = "headless Chromium not found on PATH (Debian: apt-get install -y chromium)"
    if os.environ.get("DATAFACTORY_REQUIRE_BROWSER") == "1":
        pytest.fail(f"DATAFACTORY_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


def run_chromium(chromium: str, profile: Path, page: Path, *args: str) -> subprocess.CompletedProcess:
    command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)


def dom_attribute(dom: str, name: str) -> str | None:
    match = re.search(rf'<html[^>]*\s{name}="([^"]*)"', dom)
    return html.unescape(match.group(1)) if match else None


def test_report_renders_in_chromium(chromium, demo_build, tmp_path):
    probed = tmp_path / "probed.html"
    probed.write_text(page_of(demo_build).replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    result = run_chromium(chromium, tmp_path / "profile", probed, "--enable-logging=stderr", "--v=0",
                          "--window-size=1280,900", "--dump-dom")
    assert dom_attribute(result.stdout, "data-probe") == "done", (result.returncode, result.stderr[-3000:])
    assert json.loads(dom_attribute(result.stdout, "data-console-errors") or "[]") == []
    uncaught = [line for line in result.stderr.splitlines() if "CONSOLE" in line and "Uncaught" in line]
    assert not uncaught, uncaught
    charts = json.loads(dom_attribute(result.stdout, "data-charts"))
    assert {chart["id"].split("-")[1] for chart in charts} == set(SECTIONS)
    for chart in charts:
        assert chart["plotted"] and chart["traces"] > 0 and chart["marks"] > 0, chart
        assert chart["width"] > 300 and chart["height"] > 200, chart

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "report.png"
    screenshot.unlink(missing_ok=True)
    height = min(int(dom_attribute(result.stdout, "data-page-height")), MAX_SCREENSHOT_HEIGHT)
    shot = run_chromium(chromium, tmp_path / "profile", demo_build / REPORT_NAME, f"--window-size=1280,{height}",
                        f"--screenshot={screenshot}")
    assert screenshot.exists(), shot.stderr[-3000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 50_000


# ----------------------------------------------------------------------------- wind tunnel


def test_the_wind_tunnel_charts_draw_from_its_report(tmp_path):
    """Three charts from DIR/windtunnel/report.json (the planted grid's analysis), each query runnable in DuckDB."""
    from support.windtunnel_grid import DECAY_FRACTIONS, SEQ_LEN, WARMUP, WIDTHS, curves, grid

    from datafactory.trainer.windtunnel_report import TunnelInputs, analyse

    report = analyse(TunnelInputs(grid(), curves(), SEQ_LEN, WARMUP, DECAY_FRACTIONS, target_width=2048,
                                  target_tokens=1_600_000))
    report["grid"] = {"held_out_width": WIDTHS[-1]}
    (tmp_path / "windtunnel").mkdir()
    (tmp_path / "windtunnel" / "report.json").write_text(json.dumps(report), encoding="utf-8")
    duckdb.connect(str(tmp_path / "catalog.duckdb")).close()  # an empty catalog: the other charts note their absence
    page = page_of(write_report(tmp_path).parent)
    assert all(f'id="chart-windtunnel-{i}"' in page for i in range(3)), notes(page)
    assert f"loss gap {report['validation']['loss_gap']:.2%}" in page
    tunnel_sql = [sql for sql in sql_blocks(page) if "windtunnel/report.json" in sql]
    assert len(tunnel_sql) == 2
    with duckdb.connect() as con:
        for sql in tunnel_sql:
            assert con.execute(sql).fetchall(), sql


def test_repeated_spans_show_per_source_with_samples(tmp_path):
    from support.builds import run_dedup, write_stage_output
    from support.planted_spans import planted_rows

    rows, _ = planted_rows()
    write_stage_output("heuristics", tmp_path, rows)
    run_dedup(tmp_path, substrings={"enabled": True})
    build_catalog(tmp_path)
    page = page_of(write_report(tmp_path).parent)
    assert "Repeated spans removed, by source" in page and "copies removed" in page, notes(page)
    span_sql = [sql for sql in sql_blocks(page) if "FROM substrings" in sql]
    assert len(span_sql) == 2
    with duckdb.connect(str(tmp_path / "catalog.duckdb"), read_only=True) as con:
        by_source = con.execute(span_sql[0]).fetchall()
        assert {row[0] for row in by_source} == {"web", "news"}
        assert all(con.execute(sql).fetchall() for sql in span_sql)
