"""Fused pass vs stages one at a time: wall and CPU of ingest with language ID, signals and heuristics in its pass,
against ingest alone followed by language ID's pass (signals and heuristics in it), on a finished build.

    .venv/bin/python benchmarks/fused_pass.py BUILD_DIR CONFIG [--repeat 3] [--mode multi_processing]

BUILD_DIR is a build of CONFIG (e.g. `pipeline_vs_datatrove.py --keep DIR` leaves DIR/build and DIR/input/build.yaml);
its stages are rerun in place, alternately fused and split, and end byte-identical. CPU is the driver's own and its
worker processes' (waited children), from getrusage.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from datafactory.factory.config import load_config
from datafactory.pipelines import registry


def cpu_seconds() -> tuple[float, float]:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def rerun(build: Path, config, name: str, fused: bool) -> None:
    stage = registry.stage(name)
    (build / "stages" / name / "_SUCCESS.json").unlink(missing_ok=True)
    if fused:
        stage.execute(config, build)
    else:
        stage.implementation().run(stage.job(config, build))


def measure(build: Path, config, runs: list[tuple[str, bool]]) -> tuple[float, float, float]:
    own, children = cpu_seconds()
    start = time.perf_counter()
    for name, fused in runs:
        rerun(build, config, name, fused)
    wall = time.perf_counter() - start
    own_after, children_after = cpu_seconds()
    return wall, own_after - own, children_after - children


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("build", type=Path)
    parser.add_argument("config", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--mode", default="multi_processing", help="runner direct_running_mode for both")
    args = parser.parse_args()
    config = load_config(args.config)
    config = config.model_copy(update={"runner": config.runner.model_copy(update={"direct_running_mode": args.mode})})
    ways = {"split (ingest alone, then language ID's pass)": [("ingest", False), ("langid", True)],
            "fused (language ID, signals, heuristics in ingest's pass)": [("ingest", True)]}
    walls: dict[str, list[float]] = {way: [] for way in ways}
    for _ in range(args.repeat):
        for way, runs in ways.items():
            wall, own, workers = measure(args.build, config, runs)
            walls[way].append(wall)
            print(f"{way}: wall {wall:.1f} s, driver CPU {own:.1f} s, workers CPU {workers:.1f} s", flush=True)
    split, fused = (sum(values) / len(values) for values in walls.values())
    print(f"mean wall: split {split:.1f} s, fused {fused:.1f} s: fused saves {split - fused:.1f} s")


if __name__ == "__main__":
    main()
