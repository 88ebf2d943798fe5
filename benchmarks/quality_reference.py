"""The DCLM recipe inside a build (`quality.reference`), on real data: Wikipedia as the positives, the build's own web
documents as the negatives, then judged on DCLM's human-annotated web pages, which the classifier never sees.

    .venv/bin/python benchmarks/quality_reference.py [--data ../shared/data] [--keep DIR]

Inputs of one build (default config otherwise, in process): `wiki` = the English and Chinese Wikipedia chunks of
`quality_labelled.jsonl` (the reference source), `web` = `web_sample.jsonl.gz`, `dclm` = the DCLM human-annotated
documents (hq/lq). The build trains `models/quality-reference.bin` on wiki vs a sample of web + dclm documents that
reach the quality stage; the table gives its own held-out metrics (MODEL.json) and the ROC-AUC of `quality_score`
against the human labels on the DCLM documents that reach the stage, beside the built-in default model's.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import duckdb
import yaml
from sklearn.metrics import roc_auc_score
from workspace import add_workspace_arguments, workspace

from datafactory.factory.config import load_config
from datafactory.filters.quality_train import sidecar_path
from datafactory.pipelines.quality import reference_model_path
from datafactory.pipelines.registry import STAGES

WIKI = ("wikipedia-en-llamafactory", "cmrc2018-zhwiki")


def write_inputs(data: Path, folder: Path) -> dict[str, str]:
    """The three input files; returns the DCLM documents' labels by id."""
    labelled = [json.loads(line) for line in open(data / "quality_labelled.jsonl", encoding="utf-8")]
    labels = {}
    with open(folder / "wiki.jsonl", "w") as wiki, open(folder / "dclm.jsonl", "w") as dclm:
        for row in labelled:
            if row["source"] in WIKI:
                wiki.write(json.dumps({"id": row["id"], "text": row["text"]}, ensure_ascii=False) + "\n")
            elif row["source"] == "dclm-human-annotation":
                dclm.write(json.dumps({"id": row["id"], "text": row["text"]}, ensure_ascii=False) + "\n")
                labels[row["id"]] = row["label"]
    with gzip.open(data / "web_sample.jsonl.gz", "rb") as source, open(folder / "web.jsonl", "wb") as web:
        web.write(source.read())
    return labels


def build(folder: Path, out: Path, quality: dict) -> list[tuple[str, float]]:
    """Builds through the quality stage; returns (doc_id, quality_score) of the DCLM documents that reached it."""
    config_path = folder / f"{out.name}.yaml"
    inputs = [{"path": f"{name}.jsonl", "source": name} for name in ("wiki", "web", "dclm")]
    config_path.write_text(yaml.safe_dump({"inputs": inputs, "quality": quality,
                                           "runner": {"direct_running_mode": "in_memory"}}))
    config = load_config(config_path)
    for stage in STAGES[: [stage.name for stage in STAGES].index("quality") + 1]:
        stage.execute(config, out)
    rows = duckdb.sql("SELECT doc_id, quality_score FROM read_parquet($files) WHERE source = 'dclm'",
                      params={"files": [str(path) for path in sorted((out / "stages" / "quality").glob("part-*"))]}
                      ).fetchall()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_workspace_arguments(parser)
    args = parser.parse_args()
    with workspace(args.keep) as root:
        folder = root / "input"
        labels = write_inputs(args.data, folder)
        runs = {"built-in default model": build(folder, root / "default", {}),
                "reference: wiki vs the build's own documents": build(folder, root / "reference",
                                                                       {"reference": {"sources": ["wiki"]}})}
        sidecar = json.loads(sidecar_path(reference_model_path(root / "reference")).read_text())
    print(f"reference classifier: trained on {sidecar['train']['n']:,} examples ({sidecar['train']['hq']:,} wiki); "
          f"its held-out slice: ROC-AUC {sidecar['heldout']['roc_auc']:.3f}")
    for name, rows in runs.items():
        truth = [labels[doc_id.split("~")[0]] == "hq" for doc_id, _ in rows]
        auc = roc_auc_score(truth, [score for _, score in rows])
        print(f"{name:<46} ROC-AUC on the {len(rows)} DCLM human-annotated documents reaching quality: {auc:.3f}")


if __name__ == "__main__":
    main()
