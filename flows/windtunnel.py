"""Prefect flow `model-windtunnel`: μP proxies at growing widths sweep learning rate x batch size on the build's own
mixture, each with WSD decay branches at several token budgets; the fitted laws predict the target run's settings.
`run_windtunnel` is the same without Prefect; it writes DIR/windtunnel/{report.json,report.md,trainer.yaml,
policy.yaml}."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from datafactory.factory.atomic import write_text_atomic
from datafactory.factory.manifest import dump_manifest
from datafactory.flows.lock import dir_lock
from datafactory.flows.proxies import (
    ProxyRun,
    RunAll,
    cpu_threads,
    model_config,
    proxy_task_runner,
    run_in_processes,
    run_serially,
    submit_all,
    write_json,
)
from datafactory.mixtures.methods import InfeasiblePlan
from datafactory.mixtures.planner import build_tokenizer, load_index, plan_phases
from datafactory.mixtures.policy import Policy, WindTunnelRules, load_policy
from datafactory.mixtures.sandbox import (
    SandboxError,
    default_targets,
    select_heldout,
    training_index,
    validation_manifest,
)
from datafactory.trainer.windtunnel import ProxyResult
from datafactory.trainer.windtunnel_report import Curve, TunnelInputs, analyse, report_markdown

WINDTUNNEL_DIR = "windtunnel"
MANIFEST_ROOT = ".."  # manifests sit in DIR/windtunnel, one level below the build like DIR/manifests


class WindTunnelError(SandboxError):
    """A wind tunnel the build or policy cannot support; the message says what to change."""


# ----------------------------------------------------------------------------- set-up


def with_default_targets(rules: WindTunnelRules, index: list[dict]) -> WindTunnelRules:
    """Without declared targets, every source of the build is a validation set (one loss averages them)."""
    return rules if rules.targets else rules.model_copy(update={"targets": default_targets(index, by_language=False)})


def proxy_model(rules: WindTunnelRules, width: int) -> dict[str, Any]:
    return {"preset": "test"} | rules.model | {"dim": width, "mup_base_dim": rules.widths[0]}


def check_models(rules: WindTunnelRules) -> None:
    """Every proxy width and the target must make a valid model: fail before anything trains."""
    for spec, what in [(proxy_model(rules, width), f"width {width}") for width in rules.widths] + [
            (rules.target.model, "the target model")]:
        try:
            model_config(spec)
        except ValueError as err:
            raise WindTunnelError(f"windtunnel {what}: {err}") from None


@dataclass(frozen=True)
class Setup:
    """The split, the manifests of every token budget (the largest one's stable phase is every proxy's trunk; each
    budget's anneal is a decay branch) and the validation manifest."""

    out: Path
    trunk: Path
    branches: tuple[str, ...]
    validation: Path
    index: list[dict]
    tokenizer: dict


def set_up(build: Path, policy: Policy) -> Setup:
    out, rules = build / WINDTUNNEL_DIR, policy.windtunnel
    check_models(rules)
    index = load_index(build)
    heldout = select_heldout(index, with_default_targets(rules, index))
    train_index = training_index(index, heldout)
    if not train_index:
        raise WindTunnelError("the held-out validation shards leave no shard to train on: lower "
                              "windtunnel.heldout_fraction or name fewer targets")
    tokenizer = build_tokenizer(build)
    validation = dump_manifest(validation_manifest(heldout, policy, tokenizer, MANIFEST_ROOT),
                               out / "validation.json")
    branches, stable = [], {}
    for tokens in rules.token_budgets:
        planned = plan_phases(train_index, policy.model_copy(update={"total_tokens": tokens}), tokenizer)
        branches.append(str(dump_manifest(planned.anneal, out / f"budget-{tokens}-anneal.json")))
        stable = planned.stable | {"next_phase": Path(branches[-1]).name}
    trunk = dump_manifest(stable, out / "trunk-stable.json")  # the largest budget's stable phase
    return Setup(out, trunk, tuple(branches), validation, index, tokenizer)


def grid(setup: Setup, rules: WindTunnelRules, run_settings: dict[str, Any]) -> list[ProxyRun]:
    """One proxy per (width, learning rate, batch size); the largest width's runs are the held-out validation."""
    return [ProxyRun(f"w{width}-lr{lr:g}-b{batch}", str(setup.trunk), str(setup.validation),
                     proxy_model(rules, width), str(setup.out / "runs" / f"w{width}-lr{lr:g}-b{batch}"), batch,
                     rules.eval_tokens, branches=setup.branches, **run_settings | {"extra": {"lr": lr}})
            for width in rules.widths for lr in rules.learning_rates for batch in rules.batch_sizes]


# ----------------------------------------------------------------------------- results -> report


def tunnel_inputs(runs: list[ProxyRun], results: list[dict], policy: Policy, seq_len: int) -> TunnelInputs:
    """Each branch end's validation loss (the mean over the target sets) and curve, per run."""
    rules, proxies, curves = policy.windtunnel, [], []
    for run, result in zip(runs, results, strict=True):
        width = run.model["dim"]
        for tokens, branch in zip(rules.token_budgets, result["branches"], strict=True):
            proxies.append(ProxyResult(width, tokens, run.extra["lr"], run.batch_size,
                                       float(np.mean(list(branch["losses"].values())))))
            curves.append(Curve(width, run.extra["lr"], run.batch_size, tokens, branch["decay_start_step"],
                                np.asarray(branch["curve"]["lr"]), np.asarray(branch["curve"]["loss"])))
    target = model_config(rules.target.model)
    return TunnelInputs(proxies, curves, seq_len, policy.warmup_fraction, rules.decay_fractions, target.dim,
                        rules.target.tokens, policy.seed)


def trainer_config(policy: Policy, report: dict) -> dict:
    """What `factory train --config` reads for the target run: its model under μP from the proxies' base width,
    the predicted batch size and peak learning rate."""
    rules = policy.windtunnel
    model = dataclasses.asdict(model_config(rules.target.model)) | {"mup_base_dim": rules.widths[0]}
    for key in ("vocab_size", "seq_len"):  # the manifest's
        model.pop(key)
    return {"model": model, "batch_size": report["prediction"]["batch_sequences"],
            "lr": report["prediction"]["peak_lr"]["value"], "min_lr_ratio": 0.1}


def target_policy(policy: Policy, report: dict) -> dict:
    """The policy with the target's tokens and the chosen decay length: `factory plan` writes its manifests."""
    return policy.model_dump(mode="json", exclude_defaults=True) | {
        "total_tokens": report["prediction"]["tokens"], "anneal_fraction": report["prediction"]["decay_fraction"]}


def plannable_here(setup: Setup, written: dict) -> str | None:
    """Why the written policy cannot be planned on this build (its tokens exceed the supply), or None."""
    try:
        plan_phases(setup.index, Policy.model_validate(written), setup.tokenizer)
    except InfeasiblePlan as err:
        return (f"{WINDTUNNEL_DIR}/policy.yaml cannot be planned on this build ({err}); plan it on the full corpus "
                "the target run trains on")
    return None


def run_windtunnel(build_dir: str | Path, policy: Policy, *, device: str = "auto", compile: bool = False,
                   workers: int = 1, threads: int | None = None, run_all: RunAll | None = None,
                   flow_run_id: str | None = None) -> dict:
    """The whole wind tunnel; returns the report it writes. `run_all` runs a list of proxies (default: serially,
    or in `workers` processes); the Prefect flow passes one that submits a task per proxy."""
    build, rules = Path(build_dir), policy.windtunnel
    run_all = run_all or (run_serially if workers <= 1 else run_in_processes(workers))
    settings = {"device": device, "compile": compile, "threads": threads or cpu_threads(workers, device)}
    with dir_lock(build / WINDTUNNEL_DIR, flow_run=flow_run_id):
        setup = set_up(build, policy)
        runs = grid(setup, rules, settings)
        results = run_all(runs)
        seq_len = setup.index[0]["seq_len"]
        report = analyse(tunnel_inputs(runs, results, policy, seq_len))
        written = target_policy(policy, report)
        report["warnings"] += [warning for warning in [plannable_here(setup, written)] if warning]
        files = {"trainer": setup.out / "trainer.yaml", "policy": setup.out / "policy.yaml"}
        report |= {"grid": {"widths": rules.widths, "base_width": rules.widths[0], "held_out_width": rules.widths[-1],
                            "learning_rates": rules.learning_rates, "batch_sizes": rules.batch_sizes,
                            "token_budgets": rules.token_budgets, "seq_len": seq_len, "runs": len(runs)},
                   "target_model": rules.target.model, "files": {name: str(path) for name, path in files.items()},
                   "proxy_seconds": sum(result["seconds"] for result in results)}
        write_text_atomic(files["trainer"], yaml.safe_dump(trainer_config(policy, report), sort_keys=False))
        write_text_atomic(files["policy"], yaml.safe_dump(written, sort_keys=False))
        write_json(setup.out / "report.json", report)
        write_text_atomic(setup.out / "report.md", report_markdown(report))
    return report


# ----------------------------------------------------------------------------- Prefect


@flow(name="model-windtunnel")
def model_windtunnel(build_dir: str, policy_path: str | None = None, device: str = "auto", compile: bool = False,
                     workers: int = 1) -> dict:
    """μP proxy grid -> fitted laws -> the target run's settings (BUILD_DIR/windtunnel/trainer.yaml) + report."""
    report = run_windtunnel(build_dir, load_policy(policy_path), device=device, compile=compile, workers=workers,
                            run_all=submit_all, flow_run_id=flow_run.id)
    create_markdown_artifact(key="windtunnel-summary", markdown=report_markdown(report),
                             description=f"wind tunnel of {Path(build_dir).resolve()}")
    return report


def windtunnel_flow(workers: int = 1):
    """model_windtunnel with a task runner for `workers` proxies at once."""
    return model_windtunnel.with_options(task_runner=proxy_task_runner(workers))
