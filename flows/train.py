"""Prefect flow `train`: a mixture manifest in, a trained checkpoint out; a rerun resumes from the last checkpoint."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from datafactory.flows.artifacts import train_markdown
from datafactory.flows.lock import run_lock
from datafactory.flows.retry import RETRIES, RETRY_DELAYS, RETRY_JITTER, retry_if_transient


@task(retries=RETRIES, retry_delay_seconds=RETRY_DELAYS, retry_jitter_factor=RETRY_JITTER,
      retry_condition_fn=retry_if_transient)
def train_task(manifest: str, out_dir: str, model: str, batch_size: int, max_steps: int | None, compile: bool,
               anneal_from: str | None) -> dict:
    """Not cached: the trainer resumes from the latest checkpoint in out_dir, so a retry or rerun continues."""
    from datafactory.trainer.train import train  # torch loads only in the run that trains

    result = train(manifest, model=model, out_dir=out_dir, batch_size=batch_size, max_steps=max_steps,
                   anneal_from=anneal_from, compile=compile)
    create_markdown_artifact(key="train-summary", markdown=train_markdown(Path(manifest), result),
                             description=f"training run in {Path(out_dir).resolve()}")
    return {"steps": result.steps, "tokens": result.tokens, "first_loss": result.first_loss,
            "last_loss": result.last_loss, "metrics": str(result.metrics_path)}


@flow(name="train")
def train_flow(manifest: str, out_dir: str | None = None, model: str = "test", batch_size: int = 8,
               max_steps: int | None = None, compile: bool = True, anneal_from: str | None = None) -> dict:
    """Train from MANIFEST into OUT_DIR (default: BUILD/runs/<manifest stem>), WSD schedule from the manifest."""
    out = out_dir or str(Path(manifest).resolve().parent.parent / "runs" / Path(manifest).stem)
    with run_lock(out):  # two runs resuming the same checkpoints would overwrite each other
        return train_task(manifest, out, model, batch_size, max_steps, compile, anneal_from)
