"""Prefect flow `model-sandbox`: tiny proxy models trained on sampled mixtures choose the stable mixture (RegMix style).
`run_sandbox` is the same orchestration without Prefect: sample -> manifests -> train -> evaluate -> fit -> propose
-> confirm, plus a scaling check; it writes DIR/sandbox/{policy.yaml,report.json,report.md}."""

from __future__ import annotations

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
    params_of,
    proxy_task_runner,
    run_in_processes,
    run_serially,
    submit_all,
    write_json,
)
from datafactory.mixtures.planner import build_tokenizer, load_index
from datafactory.mixtures.policy import Policy, load_policy
from datafactory.mixtures.sandbox import (
    UNITS,
    MixtureSpace,
    candidates,
    default_targets,
    fit_targets,
    mixture_space,
    objective_weights,
    proposal_policy,
    propose,
    proxy_manifests,
    select_heldout,
    training_index,
    validation_manifest,
)
from datafactory.mixtures.sandbox_report import SandboxOutcome, make_report, report_markdown

SANDBOX_DIR = "sandbox"
MANIFEST_ROOT = ".."  # manifests sit in DIR/sandbox: a manifest's root must be its folder or the one above


# ----------------------------------------------------------------------------- the sandbox


@dataclass
class Setup:
    """What every proxy of one sandbox shares: the build, its split, the mixture space and the run settings."""

    out: Path
    policy: Policy
    index: list[dict]
    heldout: dict[str, list[dict]]
    train_index: list[dict]
    space: MixtureSpace
    tokenizer: dict
    validation: Path
    run_settings: dict[str, Any]  # ProxyRun fields shared by every run (device, compile, threads, extra)

    def proxy(self, name: str, units: np.ndarray, size: int) -> ProxyRun:
        """Write the candidate's manifest pair and describe its run at proxy size `size`."""
        rules = self.policy.sandbox
        stable, anneal = proxy_manifests(self.train_index, self.space.names, units, self.policy, rules.proxy_tokens,
                                         self.tokenizer, MANIFEST_ROOT, f"{name}-anneal.json")
        if anneal is not None:
            dump_manifest(anneal, self.out / f"{name}-anneal.json")
        path = dump_manifest(stable, self.out / f"{name}.json")
        return ProxyRun(name, str(path), str(self.validation), rules.models[size], str(self.out / "runs" / name),
                        rules.batch_size, rules.eval_tokens, **self.run_settings)


def set_up(build: Path, policy: Policy, run_settings: dict[str, Any]) -> Setup:
    """Split the target sets off, find the prior and caps, and write the validation manifest."""
    out = build / SANDBOX_DIR
    index = load_index(build)
    heldout = select_heldout(index, policy.sandbox)
    train_index = training_index(index, heldout)
    space = mixture_space(index, train_index, policy)
    tokenizer = build_tokenizer(build)
    validation = dump_manifest(validation_manifest(heldout, policy, tokenizer, MANIFEST_ROOT),
                               out / "validation.json")
    return Setup(out, policy, index, heldout, train_index, space, tokenizer, validation, run_settings)


def run_sandbox(build_dir: str | Path, policy: Policy, runs: int | None = None, *, device: str = "auto",
                compile: bool = False, workers: int = 1, threads: int | None = None, run_all: RunAll | None = None,
                train_options: dict[str, Any] | None = None, flow_run_id: str | None = None) -> dict:
    """The whole sandbox; returns the report it writes. `run_all` runs a list of proxies (default: serially, or
    in `workers` processes); the Prefect flow passes one that submits a task per proxy. `threads`: torch CPU
    threads per proxy (default: the cores shared between the workers); `train_options`: more train() arguments."""
    build = Path(build_dir)
    defaulted = not policy.sandbox.targets
    if defaulted:  # every source x language set of the build, said so in the report
        targets = default_targets(load_index(build), by_language=True)
        policy = policy.model_copy(update={"sandbox": policy.sandbox.model_copy(update={"targets": targets})})
    rules = policy.sandbox
    run_all = run_all or (run_serially if workers <= 1 else run_in_processes(workers))
    settings = {"device": device, "compile": compile, "threads": threads or cpu_threads(workers, device),
                "extra": dict(train_options or {})}
    with dir_lock(build / SANDBOX_DIR, flow_run=flow_run_id):
        setup = set_up(build, policy, settings)
        units = candidates(setup.space, runs or rules.runs, rules.concentration, policy.seed)
        results = run_all([setup.proxy(f"c{i:03d}", row, 0) for i, row in enumerate(units)])
        losses = {name: np.array([result["losses"][name] for result in results]) for name in rules.targets}
        fits = fit_targets(units / UNITS, losses, policy.seed)
        proposal = propose(setup.space, fits, objective_weights(rules), rules, policy.seed)
        # Confirmation at the first size; prior (units[0]) and proposal at every other size for the scaling check.
        more = [setup.proxy("proposal", proposal.units, 0)]
        for size in range(1, len(rules.models)):
            more += [setup.proxy(f"prior-m{size}", units[0], size),
                     setup.proxy(f"proposal-m{size}", proposal.units, size)]
        confirm = dict(zip((run.name for run in more), run_all(more), strict=True))
        written = setup.out / "policy.yaml"
        write_text_atomic(written, yaml.safe_dump(proposal_policy(policy, setup.space.names, proposal.units),
                                                  sort_keys=False))
        vocab, seq_len = setup.tokenizer["vocab_size"], setup.index[0]["seq_len"]
        params = [params_of(spec, vocab, seq_len) for spec in rules.models]
        report = make_report(SandboxOutcome(build, policy, setup.space, setup.heldout, units, results, fits, losses,
                                            proposal, confirm, written, params))
        report["targets_chosen"] = "default: every source x language of the build" if defaulted else "policy"
        write_json(setup.out / "report.json", report)
        write_text_atomic(setup.out / "report.md", report_markdown(report))
    return report


# ----------------------------------------------------------------------------- Prefect


@flow(name="model-sandbox")
def model_sandbox(build_dir: str, policy_path: str | None = None, runs: int | None = None, device: str = "auto",
                  compile: bool = False, workers: int = 1) -> dict:
    """Proxy runs on sampled mixtures -> regression -> proposed policy (BUILD_DIR/sandbox/policy.yaml) + report."""
    report = run_sandbox(build_dir, load_policy(policy_path), runs, device=device, compile=compile, workers=workers,
                         run_all=submit_all, flow_run_id=flow_run.id)
    create_markdown_artifact(key="sandbox-summary", markdown=report_markdown(report),
                             description=f"model sandbox of {Path(build_dir).resolve()}")
    return report


def sandbox_flow(workers: int = 1):
    """model_sandbox with a task runner for `workers` proxies at once: processes, since tiny models are bound by
    Python and threads would share one interpreter lock."""
    return model_sandbox.with_options(task_runner=proxy_task_runner(workers))

