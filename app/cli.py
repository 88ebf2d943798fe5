"""The `factory` command line (`factory --help` lists every command): the app layer's entry point, which may reach
every layer below it; heavy layers are imported inside the commands that need them, so `--help` starts fast.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from datafactory.factory.atomic import write_text_atomic
from datafactory.factory.catalog import (
    SQL_SPIKES,
    SUSPECT_COLUMNS,
    build_catalog,
    contamination_report,
    query,
    training_suspects,
)
from datafactory.factory.config import ConfigError
from datafactory.factory.errors import UserError, environment_problem

if TYPE_CHECKING:
    from datafactory.flows.server import BackgroundServer

app = typer.Typer(help="datafactory: raw web text -> clean, deduplicated, tokenized shards and WSD mixtures.",
                  no_args_is_help=True, add_completion=False)
shards_app = typer.Typer(help="Inspect and verify packed shards.", no_args_is_help=True)
app.add_typer(shards_app, name="shards")
quality_app = typer.Typer(help="Train and inspect quality scorers.", no_args_is_help=True)
app.add_typer(quality_app, name="quality")
console = Console()

EXAMPLE_QUERIES = [
    "SELECT status, stage, reason, count(*) AS docs FROM ledger GROUP BY ALL ORDER BY docs DESC",
    "SELECT source, lang, bucket, sum(tokens) AS tokens, count(*) AS shards FROM shards GROUP BY ALL ORDER BY ALL",
    "SELECT lang, count(*) AS docs, round(avg(quality_score), 3) AS mean_score FROM quality GROUP BY lang "
    "ORDER BY docs DESC LIMIT 10",
    "SELECT cluster_size, count(*) AS docs FROM dedup WHERE cluster_size > 1 GROUP BY ALL ORDER BY ALL",
]


def quiet_libraries() -> None:
    """Beam and Prefect log every step at INFO; the CLI prints its own progress instead."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # Flow and task runs still log their progress to the API (the UI's Logs tab); the terminal shows warnings only.
    for name in ("FLOW_RUNS", "TASK_RUNS"):
        os.environ.setdefault(f"PREFECT_LOGGING_LOGGERS_PREFECT_{name}_LEVEL", "INFO")
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # slow, busy machines
    for name in ("apache_beam", "prefect", "httpx", "root"):  # the run loggers keep their own INFO level
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)
    # Beam warns on import that the optional BigQuery client is absent; nothing here uses BigQuery.
    logging.getLogger().addFilter(lambda record: "apitools not found" not in record.getMessage())
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).addFilter(not_a_user_error)


def not_a_user_error(record: logging.LogRecord) -> bool:
    """Drop Prefect's "Encountered exception" record (and its traceback) when a flow or task fails on a user's
    mistake or a full, read-only or forbidden disk: the CLI prints that error's one line itself, and the flow run's
    state in the UI keeps the message."""
    error = record.exc_info[1] if record.exc_info else None
    return error is None or not (isinstance(error, UserError) or environment_problem(error))


def connect_prefect() -> BackgroundServer | None:
    """Point Prefect at the user's background server (started once, reused by every later build) unless
    PREFECT_API_URL names a server already or DATAFACTORY_PREFECT_SERVER=ephemeral asks for Prefect's temporary
    per-process one (seconds slower per build). Call before importing Prefect: it reads the URL at import."""
    if os.environ.get("PREFECT_API_URL") or os.environ.get("DATAFACTORY_PREFECT_SERVER") == "ephemeral":
        return None
    from datafactory.flows.server import background_server

    server = background_server()
    os.environ["PREFECT_API_URL"] = server.url
    return server


def wait_for_prefect(server: BackgroundServer | None) -> None:
    if server is None:
        return
    from datafactory.flows.server import ServerError

    try:
        server.wait()
    except ServerError as err:
        fail(f"{err}\n(set DATAFACTORY_PREFECT_SERVER=ephemeral to use Prefect's temporary server instead)")
    verb = "started" if server.started else "running"
    console.print(f"[dim]Prefect UI: {server.ui_url}  (background server {verb}, pid {server.pid}; "
                  f"`factory server stop` ends it)[/dim]", soft_wrap=True)


def print_table(columns: list[str], rows: list[tuple], title: str | None = None) -> None:
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if value is None else f"{value:,}" if isinstance(value, int) else str(value)
                        for value in row))
    console.print(table)


def fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code=2)


def run_build(config_path: Path, out: Path) -> None:
    quiet_libraries()
    server = connect_prefect()  # a server this starts comes up while the imports below run
    from datafactory.factory.config import load_config
    from datafactory.flows.lock import DirLocked, check_unlocked
    from datafactory.pipelines.registry import preflight

    try:  # unknown keys, wrong types, missing inputs, model files or rule names: fail before any stage starts
        config = load_config(config_path)
        preflight(config, str(config_path))
        check_unlocked(out)
    except (ConfigError, DirLocked) as err:
        fail(str(err))
    if config.quality.uses_default_model:
        from datafactory.filters.quality_default import MODEL_DIR

        console.print(f"quality: the built-in default model (card: {MODEL_DIR / 'MODEL_CARD.md'})")
    from datafactory.app.report import write_report
    from datafactory.flows.build import build_corpus

    wait_for_prefect(server)
    try:
        build_corpus(str(config_path), str(out))
    except (ConfigError, DirLocked) as err:
        fail(str(err))
    write_report(out)


def print_build_summary(out: Path) -> None:
    columns, rows = query(out, "SELECT status, count(*) AS docs FROM ledger GROUP BY ALL ORDER BY docs DESC")
    print_table(columns, rows, title="documents by final status")
    columns, rows = query(
        out, "SELECT stage, reason, count(*) AS docs FROM ledger WHERE status <> 'kept' GROUP BY ALL "
        "ORDER BY docs DESC LIMIT 15",
    )
    print_table(columns, rows, title="removed, by stage and reason")
    columns, rows = query(
        out, "SELECT source, lang, sum(tokens) AS tokens, sum(documents) AS docs FROM shards GROUP BY ALL "
        "ORDER BY tokens DESC LIMIT 15",
    )
    print_table(columns, rows, title="tokens by source and language")
    console.print(f"Build directory: [bold]{out.resolve()}[/bold]")
    _, views = query(out, "SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY view_name")
    console.print(f"Catalog: {out.resolve() / 'catalog.duckdb'}  (views: {', '.join(name for name, in views)})")
    console.print(f"Report: {out.resolve() / 'report.html'}  (open it in a browser; works offline)")


def print_examples(out: Path) -> None:
    console.print("Try:")
    for sql in EXAMPLE_QUERIES:
        console.print(f"  factory stats --build {out} \"{sql}\"", soft_wrap=True)


@app.command()
def build(config: Path = typer.Argument(..., help="YAML build config"),
          out: Path = typer.Option(Path("build"), "--out", help="build directory")) -> None:
    """Run the build-corpus flow for CONFIG into OUT (stages already done are skipped)."""
    run_build(config, out)
    print_build_summary(out)
    print_examples(out)


@app.command()
def stages() -> None:
    """List the build's stages in run order: what each reads, adds and does (the stage registry)."""
    from datafactory.pipelines.registry import STAGES

    print_table(["stage", "after", "adds", "does"],
                [(stage.name, (", ".join(stage.upstream) or "inputs") + (" (in its pass)" if stage.fuses else ""),
                  ", ".join(stage.added()), stage.summary) for stage in STAGES],
                title="build stages (outputs in DIR/stages/<stage>/; a catalog view per stage that writes documents)")


@app.command()
def stats(sql: str = typer.Argument(..., help="SQL over the catalog's views"),
          build: Path = typer.Option(Path("build"), "--build", help="build directory"),
          unrestricted: bool = typer.Option(False, "--unrestricted", help="let the SQL read and write files outside "
                                            "the build directory and load DuckDB extensions")) -> None:
    """Run SQL against the build's catalog.duckdb and print a table (confined to the build directory)."""
    try:
        columns, rows = query(build, sql, unrestricted=unrestricted)
    except FileNotFoundError as err:
        fail(str(err))
    except Exception as err:  # duckdb raises many error types; all are the user's SQL to fix
        fail(f"query failed: {err}")
    print_table(columns, rows)


@app.command("decontaminate-report")
def decontaminate_report(build: Path = typer.Argument(..., help="build directory")) -> None:
    """Per eval set: its items, how many the corpus held, in how many documents, from which sources and languages."""
    try:
        columns, rows = contamination_report(build)
    except FileNotFoundError as err:
        fail(str(err))
    if not rows:
        console.print("no eval set configured (decontaminate.eval_sets in the build config): nothing was looked for")
        return
    print_table(columns, rows, title="contamination: evaluation items found in the corpus")
    console.print(f"per document: factory stats --build {build} "
                  "\"SELECT doc_id, eval_set, item_id, score, keep FROM decontaminate WHERE contaminated\"")


@app.command("trace")
def trace(run: str = typer.Option(..., "--run", help="run name: its trace is DIR/runs/<run>/trace/"),
          build: Path = typer.Option(Path("build"), "--build", help="build directory"),
          top: int = typer.Option(20, "--top", help="documents shown (and listed) per direction"),
          blocklist: Path | None = typer.Option(None, "--blocklist", help="write the suspects' doc_ids here; after "
                                                "review, name the file in ingest.blocklists")) -> None:
    """From a training run back to the documents: its spike steps, and the documents whose loss stood out most above
    (noise, wrong language, garbage) and below (memorised boilerplate, escaped duplicates) their source's."""
    build_catalog(build)
    try:
        suspects = training_suspects(build, run, top)
    except FileNotFoundError as err:
        fail(str(err))
    columns, spikes = query(build, SQL_SPIKES, {"run": run})
    print_table(columns, spikes, title=f"spike steps of {run}: {len(spikes)}")
    for direction, rows in suspects.items():
        print_table(SUSPECT_COLUMNS, rows, title=f"documents whose loss stood out {direction}")
    if blocklist is not None:
        lines = [f"# suspects of run {run} (factory trace --top {top}); review, then name this file in "
                 "ingest.blocklists"]
        lines += [f"{row[0]}  # {direction} excess {row[1]}" for direction, rows in suspects.items() for row in rows]
        write_text_atomic(blocklist, "\n".join(lines) + "\n")
        console.print(f"blocklist: {blocklist} ({sum(map(len, suspects.values()))} documents)")
    quoted = run.replace("'", "''")  # shown as a command to copy, so quoted as SQL
    console.print(f"views: train_steps, segment_loss, document_loss in {build}/catalog.duckdb, e.g. factory stats "
                  f"--build {build} \"SELECT * FROM document_loss WHERE run = '{quoted}' ORDER BY excess DESC\"")


@app.command()
def catalog(build: Path = typer.Argument(..., help="build directory")) -> None:
    """(Re)write catalog.duckdb, e.g. after moving a build directory."""
    console.print(f"catalog: {build_catalog(build)}")


@app.command()
def plan(build: Path = typer.Option(Path("build"), "--build", help="build directory"),
         policy: Path | None = typer.Option(None, "--policy", help="policy YAML; default policy if omitted"),
         check: Path | None = typer.Option(None, "--check", help="validate this manifest against the build it names")
         ) -> None:
    """Write DIR/manifests/stable.json and anneal.json from the catalog and a policy, or --check a manifest."""
    from datafactory.factory.manifest import ManifestError
    from datafactory.mixtures.check import check_manifest
    from datafactory.mixtures.methods import InfeasiblePlan
    from datafactory.mixtures.planner import mean_quality, read_plan
    from datafactory.mixtures.planner import plan as make_plan
    from datafactory.mixtures.policy import load_policy

    if check is not None:
        try:
            problems = check_manifest(check)
        except ManifestError as err:
            fail(str(err))
        if problems:
            fail(f"{check} does not match its build:\n  " + "\n  ".join(problems))
        console.print(f"{check}: valid; schema, files, hashes, tokenizer, shard index and budgets match the build")
        return
    try:
        written = make_plan(build, load_policy(policy))
    except (ConfigError, InfeasiblePlan) as err:
        fail(str(err))
    rows = read_plan(build)
    for phase in ("stable", "anneal"):
        mine = [row for row in rows if row["phase"] == phase]
        quality = mean_quality(mine)
        title = f"{phase} phase: {sum(row['planned_tokens'] for row in mine):,} tokens" + (
            "" if quality is None else f", mean quality {quality:.3f}")
        print_table(["source", "available", "weight", "planned", "epochs", "quality"],
                    [(row["source"], row["available_tokens"], f"{row['weight']:.3f}", row["planned_tokens"],
                      f"{row['epochs']:.2f}", "" if row["mean_quality"] is None else f"{row['mean_quality']:.3f}")
                     for row in mine], title=title)
    console.print(f"manifests: {written['stable']}  {written['anneal']}")
    console.print(f"plan table: factory stats --build {build} \"SELECT * FROM plan\"")
    from datafactory.app.report import write_report

    console.print(f"report (with both mixtures): {write_report(build).resolve()}")


@app.command()
def train(manifest: Path = typer.Argument(..., help="stable (or anneal) manifest"),
          config: Path | None = typer.Option(None, "--config", help="train settings YAML (model, "
                                             "batch_size, lr, min_lr_ratio, ...), e.g. DIR/windtunnel/trainer.yaml"),
          model: str | None = typer.Option(None, "--model", help="model preset name or config file [default: test, "
                                           "or the config's]"),
          out: Path | None = typer.Option(None, "--out", help="run directory (default: beside the manifest)"),
          anneal_from: Path | None = typer.Option(None, "--anneal-from", help="branch a decay from this checkpoint"),
          batch_size: int | None = typer.Option(None, "--batch-size", help="[default: 8, or the config's]"),
          lr: float | None = typer.Option(None, "--lr", help="peak learning rate [default: by model size, or the "
                                          "config's]"),
          max_steps: int | None = typer.Option(None, "--max-steps"),
          compile: bool = typer.Option(True, "--compile/--no-compile"),
          trace: bool = typer.Option(True, "--trace/--no-trace", help="record steps and document losses for "
                                     "`factory trace`"),
          trace_rows: int = typer.Option(8, "--trace-rows", help="rows of every batch whose documents are traced"),
          spike_k: float = typer.Option(6.0, "--spike-k", help="a spike: above the median by k robust deviations"),
          spike_window: int = typer.Option(100, "--spike-window", help="steps the spike statistic looks back")
          ) -> None:
    """Train from a manifest with a WSD schedule that switches to the anneal recipe at decay start."""
    from datafactory.trainer.settings import TrainSettings, load_train_settings
    from datafactory.trainer.trace import TraceSettings
    from datafactory.trainer.train import train as run_training

    try:
        settings = load_train_settings(config) if config else TrainSettings()
    except ConfigError as err:
        fail(str(err))
    given = {"model": model, "batch_size": batch_size, "lr": lr}
    settings = settings.model_copy(update={key: value for key, value in given.items() if value is not None})
    out = out or manifest.parent.parent / "runs" / manifest.stem
    tracing = TraceSettings(rows_per_step=trace_rows, k=spike_k, window=spike_window) if trace else None
    result = run_training(manifest, out_dir=out, max_steps=max_steps, anneal_from=anneal_from, compile=compile,
                          trace=tracing, **settings.train_kwargs())
    console.print(f"loss {result.first_loss:.3f} -> {result.last_loss:.3f}; metrics: {result.metrics_path}")


@app.command("coord-check")
def coord_check(widths: str = typer.Option("32,64,128,256,512", "--widths", help="model widths, comma-separated"),
                steps: int = typer.Option(4, "--steps", help="Adam steps before measuring"),
                lr: float = typer.Option(1e-2, "--lr", help="learning rate at the smallest width")) -> None:
    """The μP coordinate check: each layer's mean |activation| after a few Adam steps at growing widths, under μP
    (model config `mup_base_dim`) and under standard parametrisation. Flat under μP: settings tuned on a narrow proxy
    transfer to the wide model."""
    from datafactory.trainer.mup import PARAMETRISATIONS, coordinate_check

    sizes = [int(width) for width in widths.split(",")]
    for parametrisation in PARAMETRISATIONS:
        check = coordinate_check(parametrisation, sizes, steps=steps, lr=lr)
        slopes = check.slopes()
        rows = [(str(width), *(f"{value:.3f}" for value in scales)) for width, scales in zip(sizes, check.scales,
                                                                                            strict=True)]
        rows.append(("log-log slope", *(f"{slopes[layer]:+.2f}" for layer in check.layers)))
        print_table(["width", *check.layers], rows, title=f"{parametrisation}: mean |activation| after {steps} steps")


@app.command()
def serve(
    config: Path | None = typer.Argument(None, help="build config YAML; default: the demo corpus in OUT/input"),
    out: Path = typer.Option(Path("build"), "--out", help="build directory the deployments use"),
    schedule: str | None = typer.Option(None, "--schedule", help="cron for build-corpus, e.g. '0 3 * * *' "
                                        "(overrides the config's `schedule:`)"),
    timezone: str = typer.Option("UTC", "--timezone", help="IANA time zone of --schedule"),
    policy: Path | None = typer.Option(None, "--policy", help="mixture policy YAML for plan-mixture"),
    name: str | None = typer.Option(None, "--name", help="deployment name; default: the config's file stem"),
    server: bool = typer.Option(False, "--server", help="also start a local Prefect server and UI on 127.0.0.1"),
    port: int = typer.Option(4200, "--port", help="port of that server"),
    limit: int | None = typer.Option(None, "--limit", help="most flow runs at once; default: no limit"),
) -> None:
    """Register the build-corpus, plan-mixture and train deployments and run their flow runs until Ctrl-C."""
    quiet_libraries()
    from datafactory.flows.serve import run_serve
    from datafactory.flows.server import ServerError

    try:
        run_serve(config or demo_config(out), out, name=name, schedule=schedule, timezone=timezone, policy=policy,
                  limit=limit, server=server, port=port)
    except ServerError as err:
        fail(str(err))


def run_proxy_study(policy: Path | None, prefect: bool, flows: Callable[[], tuple[Callable, Callable, Callable]]
                    ) -> dict:
    """A proxy study (sandbox, wind tunnel): the policy checked before anything trains, then the Prefect flow (or
    its body with --no-prefect); a user's mistake ends it with one line; its report printed. `flows` imports the
    study's (flow, body, markdown) once the Prefect settings are in place."""
    quiet_libraries()
    server = connect_prefect() if prefect else None
    from rich.markdown import Markdown

    from datafactory.mixtures.policy import load_policy

    with_prefect, without, markdown = flows()
    try:
        loaded = load_policy(policy)
        wait_for_prefect(server)
        report = with_prefect() if prefect else without(loaded)
    except UserError as err:
        fail(str(err))
    console.print(Markdown(markdown(report)))
    return report


@app.command()
def sandbox(build: Path = typer.Option(Path("build"), "--build", help="build directory"),
            policy: Path | None = typer.Option(None, "--policy", help="policy YAML with a `sandbox:` section"),
            runs: int | None = typer.Option(None, "--runs", help="proxy runs; default: the policy's sandbox.runs"),
            workers: int = typer.Option(1, "--workers", help="proxy runs at once, one process each"),
            device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
            compile: bool = typer.Option(False, "--compile/--no-compile", help="torch.compile the proxies (GPU)"),
            prefect: bool = typer.Option(True, "--prefect/--no-prefect",
                                         help="run as the model-sandbox Prefect flow, one task per proxy run")
            ) -> None:
    """Train tiny proxies on sampled mixtures, fit mixture -> held-out loss, propose DIR/sandbox/policy.yaml."""
    def flows():
        from datafactory.flows.sandbox import run_sandbox, sandbox_flow
        from datafactory.mixtures.sandbox_report import report_markdown

        return (lambda: sandbox_flow(workers)(str(build), None if policy is None else str(policy), runs,
                                              device=device, compile=compile, workers=workers),
                lambda loaded: run_sandbox(build, loaded, runs, device=device, compile=compile, workers=workers),
                report_markdown)

    report = run_proxy_study(policy, prefect, flows)
    console.print(f"report: {build / 'sandbox' / 'report.json'}")
    console.print(f"next: factory plan --build {build} --policy {report['proposal']['policy_file']}", soft_wrap=True)


@app.command()
def windtunnel(build: Path = typer.Option(Path("build"), "--build", help="build directory"),
               policy: Path | None = typer.Option(None, "--policy", help="policy YAML with a `windtunnel:` section"),
               workers: int = typer.Option(1, "--workers", help="proxy runs at once, one process each"),
               device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
               compile: bool = typer.Option(False, "--compile/--no-compile", help="torch.compile the proxies (GPU)"),
               prefect: bool = typer.Option(True, "--prefect/--no-prefect",
                                            help="run as the model-windtunnel Prefect flow, one task per proxy run")
               ) -> None:
    """μP proxies sweep learning rate x batch size over widths and WSD token budgets; fitted laws predict the target
    run's peak LR, batch size, decay length and loss (DIR/windtunnel/report.md, trainer.yaml, policy.yaml)."""
    def flows():
        from datafactory.flows.windtunnel import run_windtunnel, windtunnel_flow
        from datafactory.trainer.windtunnel_report import report_markdown

        return (lambda: windtunnel_flow(workers)(str(build), None if policy is None else str(policy), device=device,
                                                 compile=compile, workers=workers),
                lambda loaded: run_windtunnel(build, loaded, device=device, compile=compile, workers=workers),
                report_markdown)

    report = run_proxy_study(policy, prefect, flows)
    console.print(f"report: {build / 'windtunnel' / 'report.md'} (and report.json)")
    console.print(f"next: factory plan --build {build} --policy {report['files']['policy']} && factory train "
                  f"{build}/manifests/stable.json --config {report['files']['trainer']}", soft_wrap=True)


@app.command()
def export(out: Path | None = typer.Argument(None, help="export directory (written whole; its export.json lists "
                                             "every file with its sha256)"),
           manifest: Path | None = typer.Option(None, "--manifest", help="the phase to export, e.g. "
                                                "DIR/manifests/stable.json"),
           fmt: str = typer.Option("megatron", "--format", help="megatron | mds | litdata | hf"),
           check: Path | None = typer.Option(None, "--verify", help="check an export's files against its "
                                             "export.json instead")) -> None:
    """A manifest phase's documents in another training stack's format (no re-tokenizing), with the line that
    stack needs to apply the phase's weights."""
    from datafactory.exports.export import export, verify

    if check is not None:
        problems = verify(check)
        for problem in problems:
            console.print(f"[red]{problem}[/red]", soft_wrap=True)
        if problems:
            raise typer.Exit(1)
        console.print(f"{check}: every file matches export.json")
        return
    if manifest is None or out is None:
        fail("export needs --manifest MANIFEST and an output directory (or --verify DIR)")
    try:
        sidecar = export(manifest, fmt, out)
    except UserError as err:
        fail(str(err))
    print_table(["source", "weight", "documents", "tokens", "files"],
                [(source["name"], f"{source['weight']:.4f}", f"{source['documents']:,}", f"{source['tokens']:,}",
                  len(source["files"])) for source in sidecar["sources"]],
                title=f"{sidecar['phase']} phase as {fmt} in {out}")
    for stack, line in sidecar["usage"].items():
        console.print(f"{stack}:\n{line}", soft_wrap=True)
    console.print(f"verify: factory export --verify {out}")


server_app = typer.Typer(help="The background Prefect server that builds record their runs in.",
                         no_args_is_help=True)
app.add_typer(server_app, name="server")


@server_app.command("start")
def server_start() -> None:
    """Start the background Prefect server now (or find it running), so the next build does not wait for it."""
    from datafactory.flows.server import background_server

    wait_for_prefect(background_server())


@server_app.command("status")
def server_status() -> None:
    """Say whether the background Prefect server runs, and where its UI is."""
    from datafactory.flows.server import prefect_home, read_background

    running = read_background(prefect_home())
    if running is None:
        console.print(f"no background Prefect server for {prefect_home()} (the next `factory build` starts one)")
    else:
        console.print(f"Prefect UI: {running.ui_url}  (pid {running.pid}, log {running.log_path})")


@server_app.command("stop")
def server_stop() -> None:
    """Stop the background Prefect server (run history stays in Prefect's database)."""
    from datafactory.flows.server import prefect_home, stop_background_server

    stopped = stop_background_server()
    console.print(f"stopped the Prefect server at {stopped.ui_url} (pid {stopped.pid})" if stopped
                  else f"no background Prefect server ran for {prefect_home()}")


tokenizer_app = typer.Typer(help="Train and inspect the build's sentencepiece tokenizer.", no_args_is_help=True)
app.add_typer(tokenizer_app, name="tokenizer")


@tokenizer_app.command("train")
def tokenizer_train(config: Path = typer.Argument(..., help="the build's YAML config (tokenize.tokenizer settings)"),
                    build: Path = typer.Option(Path("build"), "--build", help="build directory")) -> None:
    """(Re)train DIR/tokenizer on a language-balanced sample of the build's kept text; print bytes per token."""
    quiet_libraries()
    from datafactory.factory.config import load_config
    from datafactory.pipelines.registry import run_stage_named
    from datafactory.pipelines.tokenizer import load_info

    try:
        result = run_stage_named("tokenizer", load_config(config), build)
    except FileNotFoundError as err:
        fail(f"{err} (run `factory build {config} --out {build}` first: the tokenizer trains on its kept text)")
    info = load_info(build)
    state = "already trained for this config and input" if result.skipped else f"trained in {result.seconds:.1f} s"
    print_table(["language", "bytes per token (held-out documents)"],
                [(lang, f"{value:.2f}") for lang, value in sorted(info.bytes_per_token.items())],
                title=f"{info.path}: {info.vocab_size:,} pieces, {state}")
    console.print(f"model: {build / info.path}  sha256 {info.sha256[:16]}…")


@app.command()
def report(build: Path = typer.Argument(..., help="build directory")) -> None:
    """Write DIR/report.html: the build's charts (funnel, languages, quality, dedup, tokens, mixtures, training)."""
    from datafactory.app.report import write_report

    try:
        build_catalog(build)  # views of what was added since the build: plans, training runs and their traces
        path = write_report(build)
    except FileNotFoundError as err:
        fail(str(err))
    console.print(f"report: {path.resolve()}  (self-contained: open it in any browser, offline)")


@shards_app.command("verify")
def shards_verify(build: Path = typer.Argument(..., help="build directory")) -> None:
    """Check every indexed shard's sha256 and row count."""
    from datafactory.factory.shards import read_index, verify_shards

    problems = verify_shards(build)
    if problems:
        fail("\n  ".join(["shards do not match the index:"] + problems))
    console.print(f"{len(read_index(build))} shards verified: hashes and row counts match the index")


@quality_app.command("train")
def quality_train(
    data: Path = typer.Argument(..., help="labelled JSONL (`label`: hq|lq); with NEGATIVES, all of it is hq"),
    negatives: Path | None = typer.Argument(None, help="JSONL of low-quality / random web text (DCLM recipe)"),
    out: Path = typer.Option(..., "--out", help="model file to write (MODEL.json beside it: data hash, metrics)"),
    kind: str = typer.Option("blend", "--kind", help="blend (a fastText classifier of your data blended with the "
                             "built-in default model), fasttext (the classifier alone), lm_ratio (two unigram LMs) "
                             "or combiner (both, and the heuristic signals)"),
    text_field: str = typer.Option("text", "--text-field"),
    heldout: float = typer.Option(0.1, "--heldout", help="share of documents held out for the metrics"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Train a quality scorer; `quality: {scorers: [{model: OUT}]}` in a build config uses it."""
    from datafactory.filters.quality_train import LabelledDataError, read_labelled, train_quality_model

    try:
        if negatives is None:
            examples = list(read_labelled(data, text_field=text_field))
        else:
            examples = [*read_labelled(data, "hq", text_field), *read_labelled(negatives, "lq", text_field)]
        with console.status(f"training a {kind} quality scorer on {len(examples):,} documents…"):
            sidecar = train_quality_model(examples, out, kind, heldout_fraction=heldout, seed=seed)
    except (LabelledDataError, ValueError) as err:
        fail(str(err))
    metrics = sidecar["heldout"]
    print_table(["held-out documents", "hq share", "ROC-AUC", "precision@top 10%"],
                [(metrics["n"], f"{metrics['hq_share']:.2f}", f"{metrics['roc_auc']:.3f}",
                  f"{metrics['precision_at_top_decile']:.3f}")], title=f"{kind} scorer")
    console.print(f"model: {out}  (data sha256, settings and metrics: {out}.json)")
    console.print(f"use it: quality: {{scorers: [{{model: {out.resolve()}}}]}}")


@app.command()
def demo(out: Path = typer.Option(Path("demo-build"), "--out", help="build directory"),
         docs: int = typer.Option(3000, "--docs", help="documents in the demo corpus"),
         steps: int = typer.Option(60, "--steps", help="training steps"),
         seed: int = typer.Option(0, "--seed")) -> None:
    """Write the built-in demo corpus, build it, plan both WSD phases, train a tiny model on CPU."""
    from datafactory.app.demo import write_demo_corpus

    corpus = write_demo_corpus(out / "input", n_docs=docs, seed=seed)
    console.print(f"demo corpus: {docs:,} documents in {out / 'input'} (ground truth: {corpus.ground_truth})")
    run_build(corpus.config, out)
    print_build_summary(out)
    demo_train(out, steps, seed)
    print_examples(out)
    console.print(f"  factory decontaminate-report {out}\n  factory trace --build {out} --run demo --top 10")


def demo_config(out_dir: Path) -> Path:
    """The built-in demo corpus's config, written into OUT/input the first time."""
    config = out_dir / "input" / "demo.yaml"
    if not config.exists():
        from datafactory.app.demo import write_demo_corpus

        write_demo_corpus(out_dir / "input")
    return config


def demo_train(out: Path, steps: int, seed: int) -> None:
    from datafactory.mixtures.planner import Policy
    from datafactory.mixtures.planner import plan as make_plan
    from datafactory.trainer.train import train as run_training

    batch_size, seq_len = 8, int(query(out, "SELECT max(seq_len) FROM shards")[1][0][0])
    policy = Policy(name="demo", total_tokens=steps * batch_size * seq_len, seed=seed, warmup_fraction=0.05,
                    anneal_fraction=0.2)
    written = make_plan(out, policy)
    build_catalog(out)
    console.print(f"manifests: {written['stable']}  {written['anneal']}")
    result = run_training(written["stable"], model="test", out_dir=out / "runs" / "demo", batch_size=batch_size)
    console.print(f"training: loss {result.first_loss:.3f} (first step) -> {result.last_loss:.3f} (last step), "
                  f"{result.tokens_per_s:,.0f} tokens/s; metrics: {result.metrics_path}")
    build_catalog(out)  # the run's trace views: `factory trace --build {out} --run demo`
    from datafactory.app.report import write_report

    console.print(f"report: {write_report(out).resolve()}  (open it in a browser; works offline)")


def main() -> None:
    """The CLI, with a user's mistake (config, manifest, policy, ...) or a full, read-only or forbidden disk as one
    `error:` line; anything else is a bug and keeps its traceback. SIGTERM exits through Python's normal shutdown
    (exit code 143), so what the command started (Prefect's temporary server, Beam workers) is stopped with it."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        app()
    except UserError as err:
        console.print(f"[red]error:[/red] {err}")
        sys.exit(2)
    except OSError as err:
        if (problem := environment_problem(err)) is None:
            raise
        console.print(f"[red]error:[/red] {problem}")
        sys.exit(1)


if __name__ == "__main__":
    main()
