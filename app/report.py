"""The build report: DIR/report.html, one self-contained page of Plotly charts drawn from the catalog, each
with the SQL behind it; a chart whose view or column is missing says so on the page instead of failing."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from datafactory.factory.atomic import write_text_atomic
from datafactory.factory.catalog import (
    CATALOG_NAME,
    CONTAMINATION_COLUMNS,
    SQL_CONTAMINATION,
    TRACE_PERIOD_STEPS,
    contamination_table,
    eval_set_items,
)
from datafactory.pipelines.registry import stage_names

REPORT_NAME = "report.html"
BUCKET_ORDER = ("low", "mid", "high")
HISTOGRAM_BINS = 60
MAX_LANGUAGES = 12  # histogram panels; the rest are named on the page
TOP_CLUSTERS = 10
SAMPLE_CHARS = 300
PLOT_CONFIG = {"displaylogo": False, "responsive": True}
COLORWAY = ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880", "#ff97ff",
            "#fecb52")  # plotly's default colours
AXIS_STYLE = {"gridcolor": "#ebf0f8", "linecolor": "#ebf0f8", "zerolinecolor": "#ebf0f8", "automargin": True}
# A small template in the spirit of plotly_white: plotly deep-copies a template into every figure, and the
# built-in ones are large enough to make that the report's main cost.
TEMPLATE = {"layout": {"colorway": COLORWAY, "paper_bgcolor": "white", "plot_bgcolor": "white",
                       "font": {"family": "system-ui, sans-serif"}, "xaxis": AXIS_STYLE, "yaxis": AXIS_STYLE,
                       "margin": {"t": 60, "l": 60, "r": 30, "b": 50}}}
# what makes a missing view appear, said under the chart that needs it
VIEW_HINTS = {"plan": "`factory plan --build DIR` adds it", "shards": "the tokenize stage writes it",
              "quality_buckets": "the quality stage writes it",
              "segment_loss": "a training run writes its trace; `factory trace` or `factory catalog` adds it"}
PHASE_COLORS = {"warmup": "rgba(255,193,7,0.15)", "stable": "rgba(76,175,80,0.10)", "decay": "rgba(33,150,243,0.15)"}


def new_figure(data: list | None = None, **subplots: object) -> go.Figure:
    """A figure with the page's template (else plotly applies its large default one), as subplots if asked."""
    figure = go.Figure(data, layout={"template": TEMPLATE})
    return make_subplots(figure=figure, **subplots) if subplots else figure


class Missing(Exception):
    """The catalog lacks a view or column a chart needs (the build has not made it, or its schema moved)."""


@dataclass
class Chart:
    """One figure (or a note saying why there is none), with the SQL that reproduces it."""

    title: str
    sql: list[str] = field(default_factory=list)
    figure: go.Figure | None = None
    note: str = ""
    extra_html: str = ""


@dataclass
class Section:
    title: str
    anchor: str
    charts: list[Chart]


class Catalog:
    """A read-only connection to DIR/catalog.duckdb that turns DuckDB's errors into Missing."""

    def __init__(self, build_dir: Path):
        self.root = build_dir.resolve()
        self.con = duckdb.connect(str(self.root / CATALOG_NAME), read_only=True)

    def rows(self, sql: str) -> list[dict]:
        try:
            result = self.con.execute(sql)
        except duckdb.Error as err:
            raise Missing(str(err).splitlines()[0]) from err
        columns = [column[0] for column in result.description]
        return [dict(zip(columns, row, strict=True)) for row in result.fetchall()]

    def path(self, relative: str) -> str:
        """An absolute path as a SQL string literal, so a shown query runs as is in any DuckDB client."""
        return "'" + str(self.root / relative).replace("'", "''") + "'"

    def close(self) -> None:
        self.con.close()


# ----------------------------------------------------------------------------- funnel

SQL_FUNNEL = """SELECT coalesce(stage, '(no stage)') AS stage, status, count(*) AS docs
FROM ledger
GROUP BY ALL
ORDER BY ALL"""
SQL_REMOVED = """SELECT coalesce(stage, '(no stage)') AS stage, status, coalesce(reason, status) AS reason,
       count(*) AS docs
FROM ledger
WHERE status <> 'kept'
GROUP BY ALL
ORDER BY docs DESC, stage, reason"""


def stage_rank(stage: str) -> tuple[int, str]:
    """Run order of the stage registry; stages it does not list (an older build's) sort after, by name."""
    order = stage_names()
    return (order.index(stage), "") if stage in order else (len(order), stage)


def funnel_chart(cat: Catalog) -> Chart:
    """Documents left after each stage: inputs minus every terminal ledger row a stage up to it wrote."""
    rows = cat.rows(SQL_FUNNEL)
    if not rows:
        raise Missing("the ledger is empty")
    total = sum(row["docs"] for row in rows)
    stages = sorted({row["stage"] for row in rows} | set(stage_names(judging_only=True)), key=stage_rank)
    left, remaining = total, []
    for stage in stages:
        left -= sum(row["docs"] for row in rows if row["stage"] == stage and row["status"] != "kept")
        remaining.append(left)
    funnel = new_figure([go.Funnel(y=["input", *[f"after {stage}" for stage in stages]], x=[total, *remaining],
                                   textinfo="value+percent initial")])
    funnel.update_layout(height=420, title=f"{total:,} input documents, {remaining[-1]:,} kept")
    return Chart("Documents remaining after each stage", [SQL_FUNNEL], funnel)


def removed_chart(cat: Catalog) -> Chart:
    """One bar per (stage, rule), coloured by stage; stages in pipeline order, largest rule first within one."""
    removed = cat.rows(SQL_REMOVED)
    chart = Chart("Documents removed, by stage and rule", [SQL_REMOVED])
    if not removed:
        chart.note = "no document was removed"
        return chart
    figure = new_figure()
    for stage in sorted({row["stage"] for row in removed}, key=stage_rank):
        mine = [row for row in removed if row["stage"] == stage]
        figure.add_trace(go.Bar(name=stage, orientation="h", x=[row["docs"] for row in mine],
                                y=[f"{stage}: {row['reason']}" for row in mine],
                                text=[f"{row['docs']:,} {row['status']}" for row in mine]))
    figure.update_layout(height=max(300, 28 * len(removed) + 120), yaxis={"autorange": "reversed"},
                         xaxis_title="documents", legend_title="stage")
    chart.figure = figure
    return chart


# ----------------------------------------------------------------------------- languages

SQL_LANGUAGES = """SELECT coalesce(l.lang, 'und') AS lang,
       count(*) AS before_filtering,
       count(*) FILTER (WHERE g.status = 'kept') AS after_filtering
FROM langid AS l JOIN ledger AS g USING (doc_id)
GROUP BY ALL
ORDER BY before_filtering DESC, lang"""


def language_chart(cat: Catalog) -> Chart:
    rows = cat.rows(SQL_LANGUAGES)
    langs = [row["lang"] for row in rows]
    figure = new_figure([
        go.Bar(name="before filtering", x=langs, y=[row["before_filtering"] for row in rows]),
        go.Bar(name="after filtering (kept)", x=langs, y=[row["after_filtering"] for row in rows],
               text=[f"{row['after_filtering'] / row['before_filtering']:.0%}" for row in rows]),
    ])
    figure.update_layout(barmode="group", height=420, xaxis_title="language (langid)", yaxis_title="documents")
    return Chart("Languages before and after filtering", [SQL_LANGUAGES], figure)


# ----------------------------------------------------------------------------- quality

SQL_SCORE_RANGE = "SELECT min(quality_score) AS lo, max(quality_score) AS hi FROM quality"
SQL_QUALITY_CUTS = "SELECT lang, low_cut, high_cut FROM quality_buckets ORDER BY lang"
LOGIT_CLAMP = 1e-6
PROBABILITY_TICKS = (1e-5, 1e-4, 1e-3, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999)


def sql_quality_histogram(logit: bool) -> str:
    """Bins over one shared range, per base language (the key the bucket cut points use)."""
    score = f"greatest(least(quality_score, 1 - {LOGIT_CLAMP}), {LOGIT_CLAMP})" if logit else "quality_score"
    x = "ln(score / (1 - score))" if logit else "score"
    bins = HISTOGRAM_BINS
    return f"""WITH scored AS (
    SELECT split_part(coalesce(lang, 'und'), '-', 1) AS lang, {score} AS score
    FROM quality WHERE quality_score IS NOT NULL),
points AS (SELECT lang, {x} AS x FROM scored),
span AS (SELECT min(x) AS lo, max(x) AS hi FROM points),
binned AS (
    SELECT lang, lo, hi, least(coalesce(floor((x - lo) / nullif(hi - lo, 0) * {bins}), 0), {bins - 1}) AS bin
    FROM points, span)
SELECT lang, lo + (hi - lo) * (bin + 0.5) / {bins} AS bin_center, (hi - lo) / {bins} AS bin_width, count(*) AS docs
FROM binned
GROUP BY ALL
ORDER BY lang, bin_center"""


def to_logit(p: float) -> float:
    p = min(max(p, LOGIT_CLAMP), 1 - LOGIT_CLAMP)
    return math.log(p / (1 - p))


def quality_chart(cat: Catalog) -> Chart:
    """Small multiples, one per language. Probability-like scores pile up near 0 and 1, where the cut points
    sit, so those are binned on a logit axis labelled in scores."""
    (span,) = cat.rows(SQL_SCORE_RANGE)
    if span["lo"] is None:
        raise Missing("no document has a quality_score")
    logit = 0 <= span["lo"] and span["hi"] <= 1
    sql = sql_quality_histogram(logit)
    rows = cat.rows(sql)
    chart = Chart("Quality-score histogram per language, with bucket cut points", [sql, SQL_QUALITY_CUTS])
    try:
        cuts = {row["lang"]: row for row in cat.rows(SQL_QUALITY_CUTS)}
    except Missing as err:
        cuts, chart.note = {}, f"cut points not available: {err}"
    docs_per_lang: dict[str, int] = {}
    for row in rows:
        docs_per_lang[row["lang"]] = docs_per_lang.get(row["lang"], 0) + row["docs"]
    langs = sorted(docs_per_lang, key=lambda lang: (-docs_per_lang[lang], lang))
    if len(langs) > MAX_LANGUAGES:
        chart.note = (chart.note + "; " if chart.note else "") + "not drawn (fewest documents): " + ", ".join(
            langs[MAX_LANGUAGES:])
        langs = langs[:MAX_LANGUAGES]
    cols = min(3, len(langs))
    figure = new_figure(rows=math.ceil(len(langs) / cols), cols=cols, vertical_spacing=0.12, shared_xaxes="all",
                        subplot_titles=[f"{lang} ({docs_per_lang[lang]:,} docs)" for lang in langs])
    place = to_logit if logit else float
    shapes = []
    for i, lang in enumerate(langs):
        mine = [row for row in rows if row["lang"] == lang]
        figure.add_trace(go.Bar(x=[row["bin_center"] for row in mine], y=[row["docs"] for row in mine],
                                width=[row["bin_width"] or 1e-6 for row in mine], name=lang, showlegend=False,
                                marker_color=COLORWAY[0]), row=i // cols + 1, col=i % cols + 1)
        axis = "" if i == 0 else str(i + 1)
        for name, color in (("low_cut", COLORWAY[1]), ("high_cut", COLORWAY[2])):
            if lang in cuts and cuts[lang][name] is not None:
                x = place(cuts[lang][name])
                shapes.append({"type": "line", "xref": f"x{axis}", "yref": f"y{axis} domain", "x0": x, "x1": x,
                               "y0": 0, "y1": 1, "line": {"dash": "dash", "color": color, "width": 2}})
    # one layout update for all cut lines: add_vline per line re-validates the whole layout each time
    figure.update_layout(shapes=shapes, height=240 * math.ceil(len(langs) / cols) + 80, bargap=0,
                         title="dashed: bucket cut points (red: low | mid, green: mid | high)")
    if logit:
        ticks = [p for p in PROBABILITY_TICKS if to_logit(span["lo"]) - 1 <= to_logit(p) <= to_logit(span["hi"]) + 1]
        figure.update_xaxes(tickvals=[to_logit(p) for p in ticks], ticktext=[f"{p:g}" for p in ticks],
                            showticklabels=True)
        figure.update_layout(xaxis_title="quality score (logit scale)")
    chart.figure = figure
    return chart


# ----------------------------------------------------------------------------- dedup

SQL_CLUSTER_SIZES = """SELECT cluster_size,
       count(DISTINCT coalesce(minhash_cluster, doc_id)) AS clusters,
       count(*) AS docs
FROM dedup
GROUP BY ALL
ORDER BY cluster_size"""


def sql_top_clusters(cat: Catalog) -> str:
    # dedup's view leaves text out (it is large); ingest's files hold every document's text.
    return f"""WITH top AS (
    SELECT minhash_cluster AS cluster, count(*) AS size
    FROM dedup WHERE minhash_cluster IS NOT NULL
    GROUP BY ALL
    ORDER BY size DESC, cluster LIMIT {TOP_CLUSTERS})
SELECT top.cluster, top.size, left(t.text, {SAMPLE_CHARS}) AS sample
FROM top LEFT JOIN read_parquet({cat.path('stages/ingest/part-*.parquet')}) AS t ON t.doc_id = top.cluster
ORDER BY top.size DESC, top.cluster"""


def cluster_size_chart(cat: Catalog) -> Chart:
    rows = cat.rows(SQL_CLUSTER_SIZES)
    figure = new_figure([go.Bar(x=[str(row["cluster_size"]) for row in rows], y=[row["clusters"] for row in rows],
                              text=[f"{row['docs']:,} docs" for row in rows])])
    figure.update_layout(height=380, xaxis_title="cluster size (documents)", yaxis_title="clusters (log scale)",
                         yaxis_type="log", xaxis_type="category")
    return Chart("Dedup cluster sizes", [SQL_CLUSTER_SIZES], figure)


def top_clusters_chart(cat: Catalog) -> Chart:
    sql = sql_top_clusters(cat)
    rows = cat.rows(sql)
    chart = Chart(f"Top {TOP_CLUSTERS} clusters, with the survivor's text", [sql])
    if not rows:
        chart.note = "no MinHash cluster in this build"
        return chart
    samples = [(row["sample"] or "(text not found)").replace("\n", " ") for row in rows]
    figure = new_figure([go.Bar(orientation="h", x=[row["size"] for row in rows], y=[row["cluster"] for row in rows],
                              hovertext=[sample[:120] for sample in samples], hoverinfo="x+y+text")])
    figure.update_layout(height=max(300, 30 * len(rows) + 120), yaxis={"autorange": "reversed", "type": "category"},
                         xaxis_title="documents in cluster")
    chart.figure = figure
    chart.extra_html = html_table(["cluster", "size", "sample"],
                                  [(row["cluster"], f"{row['size']:,}", sample) for row, sample in zip(rows, samples,
                                                                                                        strict=True)])
    return chart


SQL_SPANS_BY_SOURCE = """SELECT source, count(*) AS spans, count(DISTINCT doc_id) AS documents, sum(bytes) AS bytes
FROM substrings
GROUP BY ALL
ORDER BY bytes DESC, source"""
# A span's copies are told apart by where the kept copy starts: every copy of one disclaimer names the same place.
SQL_TOP_SPANS = f"""SELECT kept_in, kept_start, count(*) AS copies_removed, sum(bytes) AS bytes,
       left(any_value(sample ORDER BY doc_id), {SAMPLE_CHARS}) AS sample
FROM substrings
GROUP BY ALL
ORDER BY copies_removed DESC, bytes DESC, kept_in, kept_start
LIMIT {TOP_CLUSTERS}"""


def repeated_spans_chart(cat: Catalog) -> Chart:
    title = "Repeated spans removed, by source"
    if not cat.rows("SELECT 1 FROM duckdb_views() WHERE view_name = 'substrings'"):
        return Chart(title, note="substring dedup is off in this build (`substrings: {enabled: true}` or "
                     "`preset: web` turns it on)")
    chart = Chart(title, [SQL_SPANS_BY_SOURCE, SQL_TOP_SPANS])
    by_source = cat.rows(SQL_SPANS_BY_SOURCE)
    if not by_source:
        chart.note = "no span repeated across surviving documents was long enough to remove"
        return chart
    figure = new_figure([go.Bar(x=[row["source"] for row in by_source], y=[row["bytes"] for row in by_source],
                                text=[f"{row['spans']:,} spans in {row['documents']:,} docs" for row in by_source])])
    figure.update_layout(height=360, xaxis_title="source", yaxis_title="bytes removed", xaxis_type="category")
    chart.figure = figure
    top = cat.rows(SQL_TOP_SPANS)
    chart.extra_html = html_table(["kept in", "at", "copies removed", "bytes", "sample"], [
        (row["kept_in"], f"{row['kept_start']:,}", f"{row['copies_removed']:,}", f"{row['bytes']:,}",
         (row["sample"] or "").replace("\n", " ")) for row in top])
    return chart


# ----------------------------------------------------------------------------- tokens

SQL_TOKENS = """SELECT source, lang, bucket, sum(tokens) AS tokens, sum(documents) AS documents, count(*) AS shards
FROM shards
GROUP BY ALL
ORDER BY ALL"""


def bucket_rank(bucket: str | None) -> tuple[int, str]:
    return (BUCKET_ORDER.index(bucket), "") if bucket in BUCKET_ORDER else (len(BUCKET_ORDER), str(bucket))


def tokens_chart(cat: Catalog) -> Chart:
    rows = cat.rows(SQL_TOKENS)
    if not rows:
        raise Missing("the shard index is empty")
    figure = new_figure()
    for bucket in sorted({row["bucket"] for row in rows}, key=bucket_rank):
        mine = [row for row in rows if row["bucket"] == bucket]
        # a two-level category axis: source, then language within it
        figure.add_trace(go.Bar(name=str(bucket), x=[[row["source"] for row in mine], [row["lang"] for row in mine]],
                                y=[row["tokens"] for row in mine],
                                hovertext=[f"{row['documents']:,} docs in {row['shards']:,} shards" for row in mine]))
    total = sum(row["tokens"] for row in rows)
    figure.update_layout(barmode="stack", height=440, yaxis_title="tokens", legend_title="quality bucket",
                         title=f"{total:,} tokens in shards")
    return Chart("Tokens per source x language x quality bucket", [SQL_TOKENS], figure)


# ----------------------------------------------------------------------------- mixtures

SQL_PLAN = "SELECT * FROM plan ORDER BY phase, source"
PLAN_MEASURES = (("weight", "weight"), ("planned_tokens", "planned tokens"), ("epochs", "epochs"))


def mixture_chart(cat: Catalog) -> Chart:
    """Phases side by side (columns), one row per measure the plan view has; a source keeps its colour."""
    rows = cat.rows(SQL_PLAN)
    if not rows:
        raise Missing("the plan view is empty")
    chart = Chart("Planned mixtures: stable and anneal side by side", [SQL_PLAN])
    measures = [(key, label) for key, label in PLAN_MEASURES if key in rows[0]]
    absent = [key for key, _ in PLAN_MEASURES if key not in rows[0]]
    if absent or "source" not in rows[0]:
        chart.note = f"plan view lacks {', '.join(absent or ['source'])}"
    if not measures or "source" not in rows[0]:
        return chart
    phases = sorted({str(row.get("phase")) for row in rows}, key=lambda p: ({"stable": 0, "anneal": 1}.get(p, 2), p))
    figure = new_figure(rows=len(measures), cols=len(phases), shared_yaxes="rows", column_titles=phases,
                        row_titles=[label for _, label in measures], vertical_spacing=0.08)
    families = sorted({str(row["source"]).split(":")[0] for row in rows})
    in_legend: set[str] = set()
    for c, phase in enumerate(phases, start=1):
        mine = [row for row in rows if str(row.get("phase")) == phase]
        for r, (key, _) in enumerate(measures, start=1):
            for f, family in enumerate(families):
                part = [row for row in mine if str(row["source"]).split(":")[0] == family]
                if part:
                    figure.add_trace(go.Bar(x=[row["source"] for row in part], y=[row[key] for row in part],
                                            name=family, legendgroup=family, marker_color=COLORWAY[f % len(COLORWAY)],
                                            showlegend=family not in in_legend), row=r, col=c)
                    in_legend.add(family)
    figure.update_layout(height=260 * len(measures) + 80, legend_title="source", barmode="group")
    chart.figure = figure
    return chart


# ----------------------------------------------------------------------------- training

METRIC_COLUMNS = ("{step: 'BIGINT', phase: 'VARCHAR', lr: 'DOUBLE', loss: 'DOUBLE', tokens: 'BIGINT', "
                  "loss_per_source: 'MAP(VARCHAR, DOUBLE)'}")


def sql_run(metrics: str) -> tuple[str, str]:
    overall = f"""SELECT step, tokens, phase, lr, loss
FROM read_json({metrics}, columns={METRIC_COLUMNS})
ORDER BY step"""
    per_source = f"""SELECT step, tokens, unnest(map_keys(loss_per_source)) AS source,
       unnest(map_values(loss_per_source)) AS loss
FROM read_json({metrics}, columns={METRIC_COLUMNS})
ORDER BY source, step"""
    return overall, per_source


def sql_schedule(cat: Catalog) -> str:
    return f"""SELECT lr_schedule.warmup_tokens, lr_schedule.decay_start_tokens, lr_schedule.total_tokens
FROM read_json_auto({cat.path('manifests/stable.json')})"""


def wsd_phases(cat: Catalog, points: list[dict]) -> tuple[list[tuple[str, float, float]], str | None]:
    """(name, start, end) in tokens from the stable manifest's lr_schedule; without one, from the logged phases."""
    end = max(row["tokens"] or 0 for row in points)
    try:
        (schedule,) = cat.rows(sql_schedule(cat))
        warmup, decay, total = (schedule[key] for key in ("warmup_tokens", "decay_start_tokens", "total_tokens"))
        return [("warmup", 0, warmup), ("stable", warmup, decay), ("decay", decay, max(total, end))], None
    except (Missing, ValueError, KeyError, TypeError) as err:
        anneal = [row["tokens"] for row in points if row["phase"] == "anneal" and row["tokens"] is not None]
        note = f"no lr_schedule ({err}); phases from the logged `phase` field"
        if not anneal:
            return [("stable", 0, end)], note
        return [("stable", 0, min(anneal)), ("decay", min(anneal), end)], note


def run_chart(cat: Catalog, metrics: Path) -> Chart:
    overall_sql, per_source_sql = sql_run(cat.path(str(metrics.relative_to(cat.root))))
    run = metrics.parent.name
    chart = Chart(f"Training run '{run}': loss overall and per source", [overall_sql, per_source_sql])
    points = [row for row in cat.rows(overall_sql) if row["loss"] is not None]
    if not points:
        chart.note = "the run has logged no loss yet"
        return chart
    chart.sql.append(sql_schedule(cat))
    phases, note = wsd_phases(cat, points)
    chart.note = note or ""
    figure = new_figure(specs=[[{"secondary_y": True}]])
    figure.update_layout(
        shapes=[{"type": "rect", "xref": "x", "yref": "paper", "x0": start, "x1": stop, "y0": 0, "y1": 1,
                 "fillcolor": PHASE_COLORS.get(name, "rgba(0,0,0,0.05)"), "line": {"width": 0}, "layer": "below"}
                for name, start, stop in phases],
        # labels alternate in height: a short warmup would put two of them on top of each other
        annotations=[{"xref": "x", "yref": "paper", "x": start, "y": 1 + 0.06 * (i % 2), "text": name,
                      "showarrow": False, "xanchor": "left", "yanchor": "bottom"}
                     for i, (name, start, _) in enumerate(phases)])
    figure.add_trace(go.Scatter(x=[row["tokens"] for row in points], y=[row["loss"] for row in points],
                                name="loss (all sources)", mode="lines+markers", line={"width": 3, "color": "#222"}))
    per_source = cat.rows(per_source_sql)
    sources = sorted({row["source"] for row in per_source})
    families = sorted({source.split(":")[0] for source in sources})
    for source in sources:
        # anneal components ("web:high") keep their source's colour, dashed
        family, _, part = source.partition(":")
        mine = [row for row in per_source if row["source"] == source]
        figure.add_trace(go.Scatter(x=[row["tokens"] for row in mine], y=[row["loss"] for row in mine],
                                    name=f"loss: {source}", mode="lines",
                                    line={"width": 1.5, "dash": "dash" if part else "solid",
                                          "color": COLORWAY[families.index(family) % len(COLORWAY)]}))
    figure.add_trace(go.Scatter(x=[row["tokens"] for row in points], y=[row["lr"] for row in points], name="lr",
                                mode="lines", line={"dash": "dot", "color": "gray"}), secondary_y=True)
    figure.update_layout(height=460, xaxis_title="tokens seen", legend_title="series")
    figure.update_yaxes(title_text="loss", secondary_y=False)
    figure.update_yaxes(title_text="learning rate", secondary_y=True, showgrid=False, tickformat=".1e")
    chart.figure = figure
    return chart


def training_charts(cat: Catalog) -> list[Chart]:
    runs = sorted(cat.root.glob("runs/*/metrics.jsonl"))
    if not runs:
        return [Chart("Training runs", note=f"no training run yet (no {cat.root}/runs/*/metrics.jsonl)")]
    return [run_chart(cat, path) for path in runs]


SQL_LOSS_BY_BUCKET = f"""SELECT run, bucket, step // {TRACE_PERIOD_STEPS} * {TRACE_PERIOD_STEPS} AS step,
       sum(loss * tokens) / sum(tokens) AS loss
FROM segment_loss
GROUP BY ALL
ORDER BY run, bucket, step"""
SQL_SPIKE_DOCUMENTS = """SELECT s.run, s.step, round(s.loss, 3) AS loss, round(s.grad_norm, 3) AS grad_norm,
       l.doc_id, l.source, l.lang, l.bucket, round(l.excess, 3) AS excess
FROM train_steps s JOIN segment_loss l USING (run, step)
WHERE s.spike
QUALIFY row_number() OVER (PARTITION BY s.run, s.step ORDER BY l.excess DESC) <= 3
ORDER BY s.run, s.step, l.excess DESC"""


def traced_loss_chart(cat: Catalog) -> Chart:
    """What the trace adds: loss per quality bucket over training, and each spike step's top documents."""
    chart = Chart("Loss by quality bucket over training; spike steps with their top documents", [SQL_LOSS_BY_BUCKET])
    rows = cat.rows(SQL_LOSS_BY_BUCKET)
    figure = new_figure()
    for run, bucket in sorted({(row["run"], row["bucket"]) for row in rows}):
        mine = [row for row in rows if (row["run"], row["bucket"]) == (run, bucket)]
        figure.add_trace(go.Scatter(x=[row["step"] for row in mine], y=[row["loss"] for row in mine],
                                    name=f"{run}: {bucket}", mode="lines+markers"))
    figure.update_layout(height=400, xaxis_title="step", yaxis_title="mean loss of traced segments")
    chart.figure = figure
    spikes = cat.rows(SQL_SPIKE_DOCUMENTS)
    if spikes:
        chart.sql.append(SQL_SPIKE_DOCUMENTS)
        chart.extra_html = html_table(list(spikes[0]), [tuple(row.values()) for row in spikes])
    else:
        chart.note = "no spike step in the traced runs"
    return chart


# ----------------------------------------------------------------------------- decontamination


def contamination_chart(cat: Catalog) -> Chart:
    chart = Chart("Contamination by eval set", [SQL_CONTAMINATION])
    found = [tuple(row.values()) for row in cat.rows(SQL_CONTAMINATION)]
    try:
        items = eval_set_items(cat.root)
    except FileNotFoundError as err:
        raise Missing(str(err)) from err
    if not items:
        chart.note = "no eval set configured (decontaminate.eval_sets): nothing was looked for"
        return chart
    table = contamination_table(items, found)
    names = [row[0] for row in table]
    figure = new_figure([
        go.Bar(name="items found in the corpus", x=names, y=[row[2] for row in table],
               text=[f"{row[2]:,} of {row[1]:,}" for row in table]),
        go.Bar(name="documents holding one", x=names, y=[row[3] for row in table]),
    ])
    figure.update_layout(barmode="group", height=380, xaxis_title="eval set", yaxis_title="count",
                         xaxis_type="category")
    chart.figure = figure
    chart.extra_html = html_table(CONTAMINATION_COLUMNS, table)
    return chart


# ----------------------------------------------------------------------------- wind tunnel

WINDTUNNEL_REPORT = "windtunnel/report.json"


def sql_tunnel_runs(cat: Catalog) -> str:
    return f"""WITH runs AS (
    SELECT unnest(runs, recursive := true) FROM read_json_auto({cat.path(WINDTUNNEL_REPORT)}))
SELECT width, lr, min(loss) AS loss
FROM runs
WHERE tokens = (SELECT max(tokens) FROM runs)
GROUP BY ALL
ORDER BY ALL"""


def sql_tunnel_optima(cat: Catalog) -> str:
    return f"""WITH optima AS (
    SELECT unnest(optima, recursive := true) FROM read_json_auto({cat.path(WINDTUNNEL_REPORT)}))
SELECT * FROM optima ORDER BY width, tokens"""


def windtunnel_charts(cat: Catalog) -> list[Chart]:
    path = cat.root / WINDTUNNEL_REPORT
    if not path.exists():
        return [Chart("Wind tunnel", note=f"no wind tunnel yet (no {path}): `factory windtunnel --build DIR "
                                          "--policy POLICY` writes it")]
    report = json.loads(path.read_text(encoding="utf-8"))
    return [make(cat, report) for make in (tunnel_lr_chart, tunnel_laws_chart, tunnel_validation_chart)]


def tunnel_lr_chart(cat: Catalog, report: dict) -> Chart:
    """Loss against peak learning rate at the largest budget (the best batch size of each), one line per width:
    under μP the minima line up."""
    sql = sql_tunnel_runs(cat)
    rows = cat.rows(sql)
    figure = new_figure()
    for width in sorted({row["width"] for row in rows}):
        mine = [row for row in rows if row["width"] == width]
        held = " (held out)" if width == report["grid"]["held_out_width"] else ""
        figure.add_trace(go.Scatter(x=[row["lr"] for row in mine], y=[row["loss"] for row in mine],
                                    mode="lines+markers", name=f"width {width}{held}"))
    figure.add_vline(x=report["validation"]["by_budget"][str(report["validation"]["tokens"])]["predicted_lr"],
                     line_dash="dash", annotation_text="predicted for the held-out width")
    figure.update_layout(height=400, xaxis_type="log", xaxis_title="peak learning rate (base width)",
                         yaxis_title="validation loss")
    return Chart("Validation loss vs learning rate per width (largest budget, best batch size)", [sql], figure)


def tunnel_laws_chart(cat: Catalog, report: dict) -> Chart:
    """The optimal learning rate and batch size of every scale against tokens, with the fitted power laws."""
    sql = sql_tunnel_optima(cat)
    rows, laws = cat.rows(sql), report["laws"]
    figure = new_figure(rows=1, cols=2, subplot_titles=("optimal learning rate", "optimal batch size (sequences)"))
    tokens = sorted({row["tokens"] for row in rows} | {report["prediction"]["tokens"]})
    for i, width in enumerate(sorted({row["width"] for row in rows})):
        mine = [row for row in rows if row["width"] == width]
        colour = COLORWAY[i % len(COLORWAY)]
        figure.add_trace(go.Scatter(x=[row["tokens"] for row in mine], y=[row["lr"] for row in mine],
                                    mode="markers", name=f"width {width}", marker_color=colour), row=1, col=1)
        lr_law = laws["lr"]
        figure.add_trace(go.Scatter(x=tokens, y=[math.exp(lr_law["intercept"]) * width ** lr_law["exponents"]["width"]
                                                 * t ** lr_law["exponents"]["tokens"] for t in tokens],
                                    mode="lines", line={"dash": "dot", "color": colour}, showlegend=False),
                         row=1, col=1)
        figure.add_trace(go.Scatter(x=[row["tokens"] for row in mine], y=[row["batch_size"] for row in mine],
                                    mode="markers", marker_color=colour, showlegend=False), row=1, col=2)
    batch_law = laws["batch_size"]
    figure.add_trace(go.Scatter(x=tokens, y=[math.exp(batch_law["intercept"]) * t ** batch_law["exponents"]["tokens"]
                                             for t in tokens], mode="lines", name="fitted law",
                                line={"dash": "dot", "color": "black"}), row=1, col=2)
    figure.update_xaxes(type="log", title_text="training tokens")
    figure.update_yaxes(type="log")
    figure.update_layout(height=420)
    return Chart("Optimal settings per scale and the fitted laws (dotted)", [sql], figure)


def tunnel_validation_chart(cat: Catalog, report: dict) -> Chart:
    """Predicted against measured at the held-out width: the decay branch the curve law never saw."""
    validation = report["validation"]
    figure = new_figure([
        go.Scatter(y=validation["measured"], mode="lines+markers", name="measured (block means)"),
        go.Scatter(y=validation["predicted"], mode="lines", line={"dash": "dash"}, name="loss-curve law"),
    ])
    figure.update_layout(height=360, xaxis_title=f"decay block (from step {validation['first_step']})",
                         yaxis_title="training loss")
    rows = [(tokens, f"{row['predicted_lr']:.3g}", f"{row['best_lr']:.3g}", f"{row['predicted_batch_size']:.3g}",
             f"{row['best_batch_size']:g}", f"{row['loss_gap']:.2%}", f"{row['loss_error']:+.2%}")
            for tokens, row in validation["by_budget"].items()]
    return Chart(f"Held-out width {validation['width']}: loss gap {validation['loss_gap']:.2%}, decay-curve MAPE "
                 f"{validation['curve_mape']:.2%} on the unseen {validation['unseen_tokens']:,}-token branch",
                 figure=figure, extra_html=html_table(["tokens", "predicted lr", "best lr", "predicted batch",
                                                       "best batch", "loss gap", "loss-law error"], rows))


# ----------------------------------------------------------------------------- page

def collect(cat: Catalog) -> list[Section]:
    plan: list[tuple[str, str, str, Callable[[Catalog], list[Chart] | Chart]]] = [
        ("Funnel: documents through the stages", "funnel", "Documents remaining after each stage", funnel_chart),
        ("Funnel: documents through the stages", "funnel", "Documents removed, by stage and rule", removed_chart),
        ("Languages", "languages", "Languages before and after filtering", language_chart),
        ("Quality scores", "quality", "Quality-score histogram per language", quality_chart),
        ("Deduplication", "dedup", "Dedup cluster sizes", cluster_size_chart),
        ("Deduplication", "dedup", "Top clusters", top_clusters_chart),
        ("Deduplication", "dedup", "Repeated spans removed", repeated_spans_chart),
        ("Decontamination", "decontamination", "Contamination by eval set", contamination_chart),
        ("Tokens", "tokens", "Tokens per source x language x quality bucket", tokens_chart),
        ("Planned mixtures", "mixtures", "Planned mixtures", mixture_chart),
        ("Training", "training", "Training runs", training_charts),
        ("Training", "training", "Loss by quality bucket; spike steps", traced_loss_chart),
        ("Wind tunnel", "windtunnel", "Wind tunnel", windtunnel_charts),
    ]
    sections: dict[str, Section] = {}
    for title, anchor, chart_title, make in plan:
        section = sections.setdefault(anchor, Section(title, anchor, []))
        section.charts.extend(safely(make, cat, chart_title))
    return list(sections.values())


def safely(make: Callable[[Catalog], list[Chart] | Chart], cat: Catalog, title: str) -> list[Chart]:
    """A missing view or column becomes a note on the page; so does a bug here: a report never fails a build."""
    try:
        made = make(cat)
    except Missing as err:
        hints = [hint for view, hint in VIEW_HINTS.items() if f"Table with name {view} does not exist" in str(err)]
        return [Chart(title, note=f"not available: {err}" + "".join(f" ({hint})" for hint in hints))]
    except Exception as err:  # a bug in one chart must not cost the rest of the report
        return [Chart(title, note=f"could not draw this chart: {type(err).__name__}: {err}")]
    return made if isinstance(made, list) else [made]


def html_table(header: list[str], rows: list[tuple]) -> str:
    head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def chart_html(chart: Chart, chart_id: str) -> str:
    parts = [f'<div class="chart" id="{chart_id}-box"><h3>{html.escape(chart.title)}</h3>']
    if chart.note:
        parts.append(f'<p class="note">{html.escape(chart.note)}</p>')
    if chart.figure is not None:
        parts.append(pio.to_html(chart.figure, include_plotlyjs=False, full_html=False, div_id=chart_id,
                                 config=PLOT_CONFIG, default_height=chart.figure.layout.height or 420))
    parts.append(chart.extra_html)
    for sql in chart.sql:
        parts.append(f"<details open><summary>SQL</summary><pre class=\"sql\">{html.escape(sql)}</pre></details>")
    parts.append("</div>")
    return "\n".join(parts)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 1em 2em; color: #222; }
nav a { margin-right: 1em; }
section { border-top: 1px solid #ddd; margin-top: 1.5em; }
.chart { margin: 1em 0 2em; }
.note { background: #fff8e1; border-left: 4px solid #ffb300; padding: .4em .8em; }
pre.sql { background: #f6f8fa; padding: .6em; overflow-x: auto; font-size: 12px; }
summary { cursor: pointer; color: #555; font-size: 13px; }
table { border-collapse: collapse; font-size: 13px; margin: .5em 0; }
td, th { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
code { background: #f6f8fa; padding: 0 .3em; }
"""


def render(build_dir: Path, sections: list[Section]) -> str:
    root = html.escape(str(build_dir.resolve()))
    nav = " ".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections)
    body = []
    for section in sections:
        charts = "\n".join(chart_html(chart, f"chart-{section.anchor}-{i}") for i, chart in enumerate(section.charts))
        body.append(f'<section id="{section.anchor}"><h2>{html.escape(section.title)}</h2>\n{charts}</section>')
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>datafactory report: {root}</title>
<style>{STYLE}</style>
<script>{get_plotlyjs()}</script>
</head><body>
<h1>datafactory build report</h1>
<p>Build <code>{root}</code>, generated {generated}. Every chart lists its SQL: run it with
<code>factory stats --build {root} "SQL"</code> or in <code>duckdb -readonly {root}/{CATALOG_NAME}</code>.</p>
<nav>{nav}</nav>
{"".join(body)}
</body></html>
"""


def write_report(build_dir: str | Path) -> Path:
    """Write DIR/report.html from DIR/catalog.duckdb (atomically) and return its path."""
    build_dir = Path(build_dir)
    if not (build_dir / CATALOG_NAME).exists():
        raise FileNotFoundError(f"no catalog at {build_dir / CATALOG_NAME}: run `factory build` first")
    cat = Catalog(build_dir)
    try:
        page = render(build_dir, collect(cat))
    finally:
        cat.close()
    return write_text_atomic(build_dir / REPORT_NAME, page)
