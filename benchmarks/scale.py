"""Scale: `factory build` (default config, every stage, Prefect) at several input sizes; wall time, MB/s and the
peak RSS of the build's whole process tree per size, and the fitted growth of each.

    .venv/bin/python benchmarks/scale.py [--sizes 30,120,500] [--data ../shared/data] [--keep DIR]

Input: real web text from `web_sample.jsonl.gz`, scaled up without making duplicates: copy 0 is the sample itself,
and in copy k every document's lines are interleaved with those of another document of the same language (a
different partner per copy), so near-duplicate detection keeps them apart and every stage sees the whole volume.
Four input files per size. The builds reuse one background Prefect server (started before the first timing, not
counted: it is the user's, shared by every build).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil
import yaml
from workspace import add_workspace_arguments, workspace

from datafactory.pipelines.registry import stage_names

STAGE_NAMES = stage_names()
FILES = 4


def load_records(data: Path) -> list[dict]:
    with gzip.open(data / "web_sample.jsonl.gz", "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def interleave(first: str, second: str) -> str:
    a, b = first.split("\n"), second.split("\n")
    mixed = [line for pair in zip(a, b, strict=False) for line in pair]
    return "\n".join(mixed + a[len(b):] + b[len(a):])


def write_corpus(records: list[dict], folder: Path, megabytes: float) -> int:
    """Writes FILES JSONL files holding about `megabytes` of records; returns their total size in bytes."""
    by_lang: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        by_lang.setdefault(record.get("lang") or "und", []).append(index)
    outs = [open(folder / f"web-{i}.jsonl", "w", encoding="utf-8") for i in range(FILES)]  # noqa: SIM115
    written, copy = 0, 0
    try:
        while written < megabytes * 1e6:
            for index, record in enumerate(records):
                if copy:
                    group = by_lang[record.get("lang") or "und"]
                    partner = records[group[(group.index(index) + copy) % len(group)]]
                    record = record | {"id": f"{record['id']}#{copy}", "text": interleave(record["text"],
                                                                                          partner["text"])}
                line = json.dumps(record, ensure_ascii=False) + "\n"
                outs[index % FILES].write(line)
                written += len(line.encode())
                if written >= megabytes * 1e6:
                    break
            copy += 1
    finally:
        for out in outs:
            out.close()
    return sum(path.stat().st_size for path in folder.glob("web-*.jsonl"))


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            continue
    return total


def run_watched(command: list[str], on_line: Callable[[str], None] = lambda line: None,
                phase: Callable[[], str] = lambda: "run", also: tuple[psutil.Process, ...] = ()
                ) -> tuple[float, dict[str, int], str]:
    """Wall seconds, the peak summed RSS of the command's process tree (sampled every 0.2 s; plus the trees of
    ``also``, e.g. cluster workers) per ``phase()`` at the time of sampling, and the command's output, each line
    handed to ``on_line`` as it comes."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watched, peaks, done = psutil.Process(process.pid), {}, threading.Event()

    def sample() -> None:
        while not done.is_set():
            current = phase()
            peaks[current] = max(peaks.get(current, 0), sum(tree_rss(member) for member in (watched, *also)))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lines = []
    for line in process.stdout:
        lines.append(line)
        on_line(line)
    process.wait()
    done.set()
    sampler.join()
    output = "".join(lines)
    if process.returncode:
        raise SystemExit(f"{' '.join(command[:4])} failed:\n{output[-3000:]}")
    return time.perf_counter() - start, peaks, output


def run_build(config: Path, out: Path, also: tuple[psutil.Process, ...] = ()) -> tuple[float, dict[str, int], str]:
    """`factory build` under run_watched, its peaks by the stage running (the first one whose progress line has not
    been printed; "after" is the catalog and report)."""
    stages, finished = list(STAGE_NAMES), []

    def on_line(line: str) -> None:
        if "✓ " in line:
            finished.append(line.split("✓ ", 1)[1].split(":", 1)[0])

    def phase() -> str:
        return stages[len(finished)] if len(finished) < len(stages) else "after"

    command = [sys.executable, "-m", "datafactory.app.cli", "build", str(config), "--out", str(out)]
    return run_watched(command, on_line, phase, also)


def stage_seconds(output: str) -> str:
    return "; ".join(line.split("✓ ", 1)[1] for line in output.splitlines() if "✓ " in line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="30,120,500", help="input sizes in MB, comma-separated")
    parser.add_argument("--eval-set", type=Path, help="JSONL eval items (question, answer) for the decontaminate stage "
                        "(`benchmarks/decontamination.py --write-items` makes one)")
    add_workspace_arguments(parser)
    args = parser.parse_args()
    records = load_records(args.data)
    sizes = [float(size) for size in args.sizes.split(",")]
    rows = []
    with workspace(args.keep) as root:
        warm = subprocess.run([sys.executable, "-m", "datafactory.app.cli", "server", "start"],
                              capture_output=True, text=True)
        print(warm.stdout.strip(), flush=True)
        for size in sizes:
            folder = root / f"in-{size:g}"
            folder.mkdir(parents=True, exist_ok=True)
            megabytes = write_corpus(records, folder, size) / 1e6
            config = folder / "build.yaml"
            settings = {"inputs": [{"path": "web-*.jsonl", "source": "web"}]}
            if args.eval_set:
                settings["decontaminate"] = {"eval_sets": [{"path": str(args.eval_set.resolve()), "name": "bench",
                                                            "fields": ["question", "answer"]}]}
            config.write_text(yaml.safe_dump(settings))
            seconds, peaks, output = run_build(config, root / f"build-{size:g}")
            peak = max(peaks.values())
            rows.append((megabytes, seconds, peak / 2**30))
            by_stage = ", ".join(f"{name} {value / 2**30:.2f}" for name, value in peaks.items())
            print(f"{megabytes:8.1f} MB  {seconds:7.1f} s  {megabytes / seconds:5.2f} MB/s  peak tree RSS "
                  f"{peak / 2**30:5.2f} GiB\n    stages: {stage_seconds(output)}\n    peak GiB while: {by_stage}",
                  flush=True)
    sizes_mb, walls, peaks = (np.array(column) for column in zip(*rows, strict=True))
    time_slope, time_fixed = np.polyfit(sizes_mb, walls, 1)
    memory_slope, memory_fixed = np.polyfit(sizes_mb, peaks, 1)
    print(f"fit: wall = {time_fixed:.1f} s + {time_slope:.3f} s/MB ({1 / time_slope:.2f} MB/s at the margin); "
          f"peak RSS = {memory_fixed:.2f} GiB + {memory_slope * 1024:.2f} MiB per MB of input")
    print(f"machine: {os.cpu_count()} cores; load before: {os.getloadavg()}")


if __name__ == "__main__":
    main()
