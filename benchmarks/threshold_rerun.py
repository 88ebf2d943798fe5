"""Threshold later: what a heuristics change costs after a finished build, thresholds vs a measuring setting.

    .venv/bin/python benchmarks/threshold_rerun.py [--data ../shared/data] [--docs N]

Builds `web_sample.jsonl.gz` once with the default config (every registered stage, no Prefect), then rebuilds it
twice into copies of that build: once with a stricter threshold (`heuristics.min_words` 50 -> 80; only the cheap
`heuristics` decision and the stages after it run) and once with a measuring setting changed (`heuristics.c4_*`,
which re-measures every document, as any heuristics change did before signals and decision were split). Prints
each stage's seconds (or "skipped") and the ratio of the two rebuilds.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import tempfile
import time
from pathlib import Path

import yaml

from datafactory.factory.config import load_config
from datafactory.pipelines.registry import STAGES

ROOT = Path(__file__).resolve().parents[1]


def write_input(data: Path, root: Path, docs: int | None) -> Path:
    lines = gzip.open(data / "web_sample.jsonl.gz", "rt", encoding="utf-8").read().split("\n")
    lines = [line for line in lines if line.strip()][:docs]
    (root / "web.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root / "web.jsonl"


def config(root: Path, name: str, heuristics: dict) -> Path:
    path = root / name
    path.write_text(yaml.safe_dump({"inputs": [{"path": "web.jsonl", "source": "web"}], "heuristics": heuristics}))
    return path


def build(config_path: Path, out: Path) -> dict[str, float | None]:
    """Seconds per stage; None for a stage skipped by its marker, 0.0 for one that ran in an earlier stage's pass
    (its time is that stage's)."""
    settings, seconds, in_pass = load_config(config_path), {}, set()
    for stage in STAGES:
        start = time.perf_counter()
        result = stage.execute(settings, out)
        in_pass |= {fused.stage for fused in result.fused}
        seconds[stage.name] = 0.0 if stage.name in in_pass else None if result.skipped else time.perf_counter() - start
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--docs", type=int, default=None, help="first N documents (default: all)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_input(args.data, root, args.docs)
        runs = {"full build": build(config(root, "base.yaml", {}), root / "base")}
        for name, heuristics in (("threshold change", {"min_words": 80}),
                                 ("measuring change", {"c4_min_words_per_line": 4})):
            out = root / name.replace(" ", "-")
            shutil.copytree(root / "base", out)
            runs[name] = build(config(root, f"{out.name}.yaml", heuristics), out)
    print(f"{'stage':<12}" + "".join(f"{name:>20}" for name in runs))
    for stage in STAGES:
        cells = [runs[name][stage.name] for name in runs]
        print(f"{stage.name:<12}" + "".join(f"{'skipped' if s is None else f'{s:.1f} s':>20}" for s in cells))
    totals = {name: sum(s for s in seconds.values() if s is not None) for name, seconds in runs.items()}
    print(f"{'total':<12}" + "".join(f"{totals[name]:>18.1f} s" for name in runs))
    print(f"threshold change / measuring change: {totals['threshold change'] / totals['measuring change']:.2f}x "
          f"(saved {totals['measuring change'] - totals['threshold change']:.1f} s)")


if __name__ == "__main__":
    main()
