"""Running mode: every stage in the build's own process (`in_memory`) vs in two worker processes
(`multi_processing`), on the same input in one run; the outputs are the same bytes, the time is not.

    .venv/bin/python benchmarks/running_mode.py [--data ../shared/data] [--copies N]

Input: `web_sample.jsonl.gz`, or N copies of it with new ids and one line added per copy (near-duplicates, so dedup
removes most of the copies). Prints seconds per stage for each mode and the ratio; `direct_running_mode: auto`
picks in process up to `runner.auto_in_memory_bytes`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
from pathlib import Path

import yaml
from threshold_rerun import build

from datafactory.pipelines.registry import STAGES

ROOT = Path(__file__).resolve().parents[1]
MODES = ("in_memory", "multi_processing")


def write_input(data: Path, path: Path, copies: int) -> int:
    with gzip.open(data / "web_sample.jsonl.gz", "rt", encoding="utf-8") as lines:
        records = [json.loads(line) for line in lines if line.strip()]
    with open(path, "w", encoding="utf-8") as out:
        for copy in range(copies):
            for record in records:
                if copies > 1:
                    record = record | {"id": f"{record['id']}#{copy}", "text": f"{record['text']}\n(copy {copy})"}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--copies", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        size = write_input(args.data, root / "web.jsonl", args.copies)
        runs = {}
        for mode in MODES:
            config = root / f"{mode}.yaml"
            config.write_text(yaml.safe_dump({"inputs": [{"path": "web.jsonl", "source": "web"}],
                                              "runner": {"direct_running_mode": mode}}))
            runs[mode] = build(config, root / mode)
    print(f"input: {size / 1e6:.1f} MB")
    print(f"{'stage':<12}" + "".join(f"{mode:>20}" for mode in MODES))
    for stage in STAGES:
        print(f"{stage.name:<12}" + "".join(f"{runs[mode][stage.name]:>18.1f} s" for mode in MODES))
    totals = {mode: sum(runs[mode].values()) for mode in MODES}
    print(f"{'total':<12}" + "".join(f"{totals[mode]:>18.1f} s" for mode in MODES))
    print(f"in process / worker processes: {totals['in_memory'] / totals['multi_processing']:.2f}x")


if __name__ == "__main__":
    main()
