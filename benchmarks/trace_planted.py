"""From training loss back to documents: bad pages planted in a real build are found at the top of
`document_loss`, and what recording the trace costs a training step.

    .venv/bin/python benchmarks/trace_planted.py [--data ../shared/data] [--seeds 3] [--documents 800] [--steps 1600]

Per seed: English pages of `web_sample.jsonl.gz`, `--share` of them replaced by bad pages that the rules let
through (tests/support/planted_training.py: half real pages with each sentence's words shuffled, half fills of one
spam template, varied enough to escape dedup), every stage, a stable manifest of `--steps` steps, a traced training
run of a test-size model (dim 128, 2 layers) on CPU. Reported: precision at k of `document_loss` ranked by excess,
highest first for the shuffled kind and lowest first for the templated kind, k = 20 or the number of planted pages of
that kind that reached the shards when fewer. Overhead: the same run (seed 0) again without the trace, tokens/s of
both (steps after the first; four 200-step turns each, alternating), in one process.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the planted build is the test's, so both measure the same thing

from support.planted_training import BATCH, build_train_and_trace, precision_at, write_planted_corpus  # noqa: E402

from datafactory.factory.catalog import query  # noqa: E402
from datafactory.trainer.train import train  # noqa: E402


def reached_shards(build: Path, truth: dict[str, str], kind: str) -> int:
    _, rows = query(build, "SELECT doc_id FROM tokenize WHERE keep")
    return sum(truth.get(doc_id) == kind for (doc_id,) in rows)


def overhead(build: Path, steps: int) -> dict[str, list[float]]:
    """tokens/s of the same training with and without the trace (fresh run directories, same manifest), in eight
    alternating turns: the machine drifts by more than the trace costs, so both best and median are reported."""
    speeds: dict[str, list[float]] = {"traced": [], "untraced": []}
    for turn in range(8):
        name = ("traced", "untraced")[turn % 2]
        out = build / "runs" / f"overhead-{turn}"
        shutil.rmtree(out, ignore_errors=True)
        result = train(build / "manifests" / "stable.json", model=build / "model.yaml", out_dir=out,
                       batch_size=BATCH, compile=False, device="cpu", log_every=50, checkpoint_every=0,
                       max_steps=steps, **({} if name == "traced" else {"trace": None}))
        speeds[name].append(result.tokens_per_s)
    return speeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--documents", type=int, default=800)
    parser.add_argument("--share", type=float, default=0.05, help="planted share of the documents (both kinds)")
    parser.add_argument("--steps", type=int, default=1600)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as work:
        for seed in range(args.seeds):
            folder, build = Path(work) / f"in-{seed}", Path(work) / f"build-{seed}"
            truth = write_planted_corpus(args.data, folder, args.documents, args.share, seed)
            run = build_train_and_trace(folder, build, args.steps, seed)
            row = {"seed": seed}
            for kind in ("shuffled", "templated"):
                k = min(20, reached_shards(build, truth, kind))
                row[kind] = (precision_at(build, run, truth, kind, k) if k else float("nan"), k)
            results.append(row)
            print(f"seed {seed}: shuffled precision@{row['shuffled'][1]} {row['shuffled'][0]:.2f}, "
                  f"templated precision@{row['templated'][1]} {row['templated'][0]:.2f}", flush=True)
            if seed == 0:
                speeds = overhead(build, min(args.steps, 200))
    for kind in ("shuffled", "templated"):
        values = [row[kind][0] for row in results]
        print(f"{kind}: mean precision {sum(values) / len(values):.2f} over {len(values)} seeds")
    best = 1 - max(speeds["traced"]) / max(speeds["untraced"])
    median = 1 - statistics.median(speeds["traced"]) / statistics.median(speeds["untraced"])
    print(f"tokens/s on CPU, four turns each (seed 0's build): traced {[round(v) for v in speeds['traced']]}, "
          f"untraced {[round(v) for v in speeds['untraced']]}; trace overhead {best:.1%} (best), {median:.1%} (median)")


if __name__ == "__main__":
    main()
