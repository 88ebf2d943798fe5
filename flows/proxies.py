"""Proxy training runs shared by the model sandbox and the wind tunnel: one run's description (picklable, keyed by
everything that changes its result), running it with resume and result caching, and running many side by side."""

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

from prefect import task
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from datafactory.factory.atomic import write_text_atomic
from datafactory.flows.retry import RETRIES, RETRY_DELAYS, RETRY_JITTER, retry_if_transient

if TYPE_CHECKING:  # torch loads only where a proxy trains
    from datafactory.trainer.model import ModelConfig

RESULT_FILE = "result.json"
STABLE_DIR = "stable"  # a branched run's stable trunk; its decays train in branch-<i>/


@dataclass(frozen=True)
class ProxyRun:
    """One proxy: a manifest, a model size, where it trains; enough to run in another process.

    With `branches` (anneal manifests, shortest first), the stable manifest trains one trunk and every branch
    decays off it where its own lr_schedule starts the decay (Warmup-Stable-Decay: one stable run, several token
    budgets); each branch end is evaluated. Without, the manifest trains once, decay included."""

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
    branches: tuple[str, ...] = ()

    def key(self) -> str:
        """Changes when anything that changes the result does: manifests' bytes, model, batch, evaluation."""
        digest = hashlib.sha256()
        manifest = Path(self.manifest)
        anneal = json.loads(manifest.read_text()).get("next_phase")
        inputs = (manifest, manifest.parent / anneal if anneal else None, Path(self.validation),
                  *(Path(branch) for branch in self.branches))
        for path in inputs:
            digest.update(path.read_bytes() if path else b"-")
        settings = {"model": self.model, "batch": self.batch_size, "eval": self.eval_tokens, "compile": self.compile,
                    "extra": self.extra}
        digest.update(json.dumps(settings, sort_keys=True).encode())
        return digest.hexdigest()


def model_config(spec: str | dict[str, Any]) -> ModelConfig:
    """A preset name or config file, or ModelConfig fields over a preset (`preset:`, default "test")."""
    from datafactory.trainer.model import load_model_config

    return load_model_config({"preset": "test"} | spec if isinstance(spec, dict) else spec)


def params_of(spec: str | dict[str, Any], vocab_size: int, seq_len: int) -> int:
    """Non-embedding parameters (Kaplan et al.'s N) of a proxy size on this build's vocabulary."""
    from datafactory.trainer.model import param_count

    config = dataclasses.replace(model_config(spec), vocab_size=vocab_size, seq_len=seq_len)
    return param_count(config, include_embedding=False)


def write_json(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------- one proxy run


def proxy_run(run: ProxyRun) -> dict:
    """Train one proxy, then its loss on every target set. A finished run with the same key is read back; a half
    run with the same key resumes from its checkpoints; a run dir of other inputs is cleared first."""
    out, key = Path(run.out_dir), run.key()
    done, key_file = out / RESULT_FILE, out / "key"
    if done.exists() and json.loads(done.read_text())["key"] == key:
        return json.loads(done.read_text())
    import torch  # loaded only where a proxy trains

    if out.exists() and (not key_file.exists() or key_file.read_text() != key):
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(key_file, key)
    started, threads = time.perf_counter(), torch.get_num_threads()
    options = {"checkpoint_every": 0, "keep_checkpoints": 1, "log_every": 1_000_000} | run.extra
    try:
        torch.set_num_threads(run.threads or threads)
        result = _train_branches(run, out, options) if run.branches else _train_once(run, out, options)
    finally:
        torch.set_num_threads(threads)  # the caller's process keeps its own setting
    result |= {"name": run.name, "key": key, "seconds": time.perf_counter() - started}
    write_json(done, result)
    return result


def _losses(run: ProxyRun, checkpoint: Path) -> dict:
    """The checkpoint's loss on every target set of the validation manifest, and the tokens each read."""
    from datafactory.trainer.evaluate import evaluate

    losses = evaluate(run.validation, checkpoint, batch_size=run.batch_size, max_tokens=run.eval_tokens,
                      device=run.device)
    return {"losses": {name: item.loss for name, item in losses.items()},
            "eval_tokens": {name: item.tokens for name, item in losses.items()}}


def _train_once(run: ProxyRun, out: Path, options: dict[str, Any]) -> dict:
    from datafactory.trainer.train import train

    trained = train(run.manifest, model=model_config(run.model), out_dir=out, batch_size=run.batch_size,
                    compile=run.compile, device=run.device, **options)
    return _losses(run, trained.checkpoint_path) | {
        "steps": trained.steps, "tokens": trained.tokens, "train_loss": trained.last_loss,
        "tokens_per_s": trained.tokens_per_s}


def _train_branches(run: ProxyRun, out: Path, options: dict[str, Any]) -> dict:
    """The stable trunk up to each branch's decay start (rounded to whole steps), a hard link to the checkpoint
    there (so resuming the trunk past it keeps it), the decay, its evaluation and its per-step (lr, loss) curve
    from the trunk's and the branch's traces."""
    from datafactory.trainer.checkpoints import link_or_copy
    from datafactory.trainer.trace import read_steps
    from datafactory.trainer.train import train

    trunk, config = out / STABLE_DIR, model_config(run.model)
    seq_len = json.loads(Path(run.manifest).read_text())["seq_len"]
    common = {"model": config, "batch_size": run.batch_size, "compile": run.compile, "device": run.device} | options
    branches = []
    for i, anneal in enumerate(run.branches):
        decay_start = json.loads(Path(anneal).read_text())["lr_schedule"]["decay_start_tokens"]
        trunk_steps = max(1, round(decay_start / (run.batch_size * seq_len)))
        start = trunk / "checkpoints" / f"branch-{i}.pt"
        if not start.exists():
            stable = train(run.manifest, out_dir=trunk, max_steps=trunk_steps, **common)
            link_or_copy(stable.checkpoint_path, start)
        decayed = train(anneal, out_dir=out / f"branch-{i}", anneal_from=start, **common)
        trunk_curve = [row for row in read_steps(trunk).to_pylist() if row["step"] <= trunk_steps]
        curve = trunk_curve + read_steps(out / f"branch-{i}").to_pylist()
        branches.append(_losses(run, decayed.checkpoint_path) | {
            "manifest": anneal, "decay_start_step": trunk_steps, "steps": decayed.steps, "tokens": decayed.tokens,
            "train_loss": decayed.last_loss, "tokens_per_s": decayed.tokens_per_s,
            "curve": {"lr": [row["lr"] for row in curve], "loss": [row["loss"] for row in curve]}})
    return {"branches": branches}


# ----------------------------------------------------------------------------- many proxy runs


RunAll = Callable[[list[ProxyRun]], list[dict]]


def run_serially(runs: list[ProxyRun]) -> list[dict]:
    return [proxy_run(run) for run in runs]


def run_in_processes(workers: int) -> RunAll:
    """Proxies in `workers` spawned processes (tiny models are bound by Python, so threads would not help)."""
    def run_all(runs: list[ProxyRun]) -> list[dict]:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            return list(pool.map(proxy_run, runs))
    return run_all


def cpu_threads(workers: int, device: str) -> int | None:
    """Split the cores between concurrent proxies on CPU (oversubscribed torch threads spin and crawl); leave
    torch's default on a GPU or when one proxy runs at a time."""
    if workers <= 1 or device not in ("auto", "cpu"):
        return None
    return max(1, (os.cpu_count() or 1) // workers)


@task(retries=RETRIES, retry_delay_seconds=RETRY_DELAYS, retry_jitter_factor=RETRY_JITTER,
      retry_condition_fn=retry_if_transient, task_run_name="proxy-{run.name}")
def proxy_task(run: ProxyRun) -> dict:
    """One proxy run; a retry resumes its checkpoint, a rerun of the flow reads its result back."""
    return proxy_run(run)


def submit_all(runs: list[ProxyRun]) -> list[dict]:
    """One task per proxy, all submitted before any is awaited, so the flow's task runner runs them side by side."""
    futures = [proxy_task.submit(run) for run in runs]
    return [future.result() for future in futures]


def proxy_task_runner(workers: int) -> ThreadPoolTaskRunner | ProcessPoolTaskRunner:
    """A task runner for `workers` proxies at once: processes, since tiny models are bound by Python and threads
    would share one interpreter lock."""
    return ThreadPoolTaskRunner(max_workers=1) if workers <= 1 else ProcessPoolTaskRunner(max_workers=workers)
