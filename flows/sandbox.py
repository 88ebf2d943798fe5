"""Prefect flow `model-sandbox`: tiny proxy models trained on sampled mixtures choose the stable mixture (RegMix style).
`run_sandbox` is the same orchestration without Prefect: sample -> manifests -> train -> evaluate -> fit -> propose
-> confirm, plus a scaling check; it writes DIR/sandbox/{policy.yaml,report.json,report.md}."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from datafactory.factory.atomic import write_text_atomic
from datafactory.factory.manifest import dump_manifest
from datafactory.flows.lock import dir_lock
from datafactory.flows.retry import RETRIES, RETRY_DELAYS, RETRY_JITTER, retry_if_transient
from datafactory.mixtures.planner import build_tokenizer, load_index
from datafactory.mixtures.policy import Policy, load_policy
from datafactory.mixtures.sandbox import (
    UNITS,
    MixtureSpace,
    candidates,
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

if TYPE_CHECKING:  # torch loads only where a proxy trains
    from datafactory.trainer.model import ModelConfig

SANDBOX_DIR = "sandbox"
MANIFEST_ROOT = ".."  # manifests sit in DIR/sandbox: a manifest's root must be its folder or the one above
RESULT_FILE = "result.json"


# ----------------------------------------------------------------------------- one proxy run


@dataclass(frozen=True)
class ProxyRun:
    """One proxy: a manifest, a model size, where it trains; enough to run in another process."""

    name: str
    manifest: str
    validation: str
    model: str | dict[str, Any]
    out_dir: str
    batch_size: int
    eval_tokens: int
    device: str = "auto"
    compile: bool = False
    threads: int | None = None  # torch CPU threads; set when several proxies share the machine's cores
    extra: dict[str, Any] = field(default_factory=dict)  # more train() keyword arguments, e.g. lr

    def key(self) -> str:
        """Changes when anything that changes the result does: manifests' bytes, model, batch, evaluation."""
        digest = hashlib.sha256()
        manifest = Path(self.manifest)
        anneal = json.loads(manifest.read_text()).get("next_phase")
        for path in (manifest, manifest.parent / anneal if anneal else None, Path(self.validation)):
            digest.update(path.read_bytes() if path else b"-")
        settings = {"model": self.model, "batch": self.batch_size, "eval": self.eval_tokens, "compile": self.compile,
                    "extra": self.extra}
        digest.update(json.dumps(settings, sort_keys=True).encode())
        return digest.hexdigest()


def model_config(spec: str | dict[str, Any]) -> ModelConfig:
    """A preset name or config file, or ModelConfig fields over a preset (`preset:`, default "test")."""
    from datafactory.trainer.model import load_model_config

    if isinstance(spec, dict):
        fields = dict(spec)
        return load_model_config(fields.pop("preset", "test"), **fields)
    return load_model_config(spec)


def write_json(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def proxy_run(run: ProxyRun) -> dict:
    """Train one proxy, then its loss on every target set. A finished run with the same key is read back; a half
    run with the same key resumes from its checkpoint; a run dir of other inputs is cleared first."""
    out, key = Path(run.out_dir), run.key()
    done, key_file = out / RESULT_FILE, out / "key"
    if done.exists() and json.loads(done.read_text())["key"] == key:
        return json.loads(done.read_text())
    import torch  # loaded only where a proxy trains

    from datafactory.trainer.evaluate import evaluate
    from datafactory.trainer.train import train

    if out.exists() and (not key_file.exists() or key_file.read_text() != key):
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(key_file, key)
    started, threads = time.perf_counter(), torch.get_num_threads()
    options = {"checkpoint_every": 0, "keep_checkpoints": 1, "log_every": 1_000_000} | run.extra
    try:
        torch.set_num_threads(run.threads or threads)
        trained = train(run.manifest, model=model_config(run.model), out_dir=out, batch_size=run.batch_size,
                        compile=run.compile, device=run.device, **options)
        losses = evaluate(run.validation, trained.checkpoint_path, batch_size=run.batch_size,
                          max_tokens=run.eval_tokens, device=run.device)
    finally:
        torch.set_num_threads(threads)  # the caller's process keeps its own setting
    result = {"name": run.name, "key": key, "losses": {name: item.loss for name, item in losses.items()},
              "eval_tokens": {name: item.tokens for name, item in losses.items()}, "steps": trained.steps,
              "tokens": trained.tokens, "train_loss": trained.last_loss, "tokens_per_s": trained.tokens_per_s,
              "seconds": time.perf_counter() - started}
    write_json(done, result)
    return result


RunAll = Callable[[list[ProxyRun]], list[dict]]


def run_serially(runs: list[ProxyRun]) -> list[dict]:
    return [proxy_run(run) for run in runs]


def run_in_processes(workers: int) -> RunAll:
    """Proxies in `workers` spawned processes (tiny models are bound by Python, so threads would not help)."""
    def run_all(runs: list[ProxyRun]) -> list[dict]:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            return list(pool.map(proxy_run, runs))
    return run_all


# ----------------------------------------------------------------------------- the sandbox


def cpu_threads(workers: int, device: str) -> int | None:
    """Split the cores between concurrent proxies on CPU (oversubscribed torch threads spin and crawl); leave
    torch's default on a GPU or when one proxy runs at a time."""
    if workers <= 1 or device not in ("auto", "cpu"):
        return None
    return max(1, (os.cpu_count() or 1) // workers)


def params_of(spec: str | dict[str, Any], vocab_size: int, seq_len: int) -> int:
    """Non-embedding parameters (Kaplan et al.'s N) of a proxy size on this build's vocabulary."""
    from datafactory.trainer.model import param_count

    config = dataclasses.replace(model_config(spec), vocab_size=vocab_size, seq_len=seq_len)
    return param_count(config, include_embedding=False)


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
    build, rules = Path(build_dir), policy.sandbox
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
        write_json(setup.out / "report.json", report)
        write_text_atomic(setup.out / "report.md", report_markdown(report))
    return report


# ----------------------------------------------------------------------------- Prefect


@task(retries=RETRIES, retry_delay_seconds=RETRY_DELAYS, retry_jitter_factor=RETRY_JITTER,
      retry_condition_fn=retry_if_transient, task_run_name="proxy-{run.name}")
def proxy_task(run: ProxyRun) -> dict:
    """One proxy run; a retry resumes its checkpoint, a rerun of the flow reads its result back."""
    return proxy_run(run)


def submit_all(runs: list[ProxyRun]) -> list[dict]:
    """One task per proxy, all submitted before any is awaited, so the flow's task runner runs them side by side."""
    futures = [proxy_task.submit(run) for run in runs]
    return [future.result() for future in futures]


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
    runner = ThreadPoolTaskRunner(max_workers=1) if workers <= 1 else ProcessPoolTaskRunner(max_workers=workers)
    return model_sandbox.with_options(task_runner=runner)

