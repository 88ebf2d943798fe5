"""The whole build on Beam's DaskRunner (a local dask.distributed cluster of 1 and of 2 worker processes) against the
in-process runner, on the same input in one run: wall time, peak memory of every process involved, and whether the
outputs are the same bytes.

    .venv/bin/python benchmarks/dask_runner.py [--size 500] [--data ../shared/data] [--keep DIR]

Input: the scale benchmark's (`benchmarks/scale.py`: real web text, no planted duplicates), four files. Every build
is `factory build` with the default config but the runner; the cluster's scheduler runs in this process and its
workers are its child processes, all counted in the peak.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

import psutil
import yaml
from distributed import LocalCluster
from scale import load_records, run_build, write_corpus
from workspace import add_workspace_arguments, workspace

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"


def output_digest(build: Path) -> str:
    """sha256 over every stage part, ledger part, shard and the shard index (markers hold timings: left out)."""
    digest = hashlib.sha256()
    files = [*build.glob("stages/*/part-*.parquet"), *build.glob("ledger/*.parquet"), *build.glob("shards/**/*.arrow"),
             build / "shards" / "index.parquet", build / "tokenizer" / "tokenizer.model"]
    for path in sorted(files):
        digest.update(str(path.relative_to(build)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def build_on(folder: Path, out: Path, runner: dict | None, also: tuple[psutil.Process, ...] = ()) -> tuple:
    config = folder / f"{out.name}.yaml"
    config.write_text(yaml.safe_dump({"inputs": [{"path": "web-*.jsonl", "source": "web"}]}
                                     | ({"runner": runner} if runner else {})))
    seconds, peaks, _ = run_build(config, out, also)
    return seconds, max(peaks.values()), output_digest(out)


def on_cluster(folder: Path, out: Path, workers: int) -> tuple:
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        runner = {"runner": DASK_RUNNER,
                  "options": {"dask_client_address": cluster.scheduler_address, "dask_partition_size": 1}}
        return build_on(folder, out, runner, (psutil.Process(os.getpid()),))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=float, default=500.0, help="input size in MB")
    add_workspace_arguments(parser)
    args = parser.parse_args()
    with workspace(args.keep) as root:
        folder = root / "input"
        megabytes = write_corpus(load_records(args.data), folder, args.size) / 1e6
        runs = {"in-process runner (auto: 2 worker processes)": build_on(folder, root / "in-process", None),
                "DaskRunner, 1 worker": on_cluster(folder, root / "dask-1", 1),
                "DaskRunner, 2 workers": on_cluster(folder, root / "dask-2", 2)}
    reference = next(iter(runs.values()))[2]
    print(f"input: {megabytes:.1f} MB in 4 files; load before: {os.getloadavg()}")
    for name, (seconds, peak, digest) in runs.items():
        same = "same bytes" if digest == reference else "DIFFERENT bytes"
        print(f"{name:<46} {seconds:7.1f} s  {megabytes / seconds:5.2f} MB/s  peak RSS {peak / 2**30:5.2f} GiB  {same}")
    one, two = runs["DaskRunner, 1 worker"][0], runs["DaskRunner, 2 workers"][0]
    print(f"Dask speedup from 1 to 2 workers: {one / two:.2f}x")


if __name__ == "__main__":
    main()
