"""`factory quality train`: trains from one labelled file or from positives + negatives, fails clearly on bad data."""

import json

from support.quality_examples import synthetic_examples
from typer.testing import CliRunner

from datafactory.app.cli import app


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_train_from_labelled_file_and_from_two_inputs(tmp_path):
    examples = synthetic_examples(60)
    write_jsonl(tmp_path / "labelled.jsonl", [{"text": t, "label": label} for t, label in examples])
    result = CliRunner().invoke(app, ["quality", "train", str(tmp_path / "labelled.jsonl"), "--out",
                                      str(tmp_path / "q.bin")])
    assert result.exit_code == 0, result.output
    sidecar = json.loads((tmp_path / "q.bin.json").read_text())
    assert sidecar["kind"] == "blend" and sidecar["heldout"]["roc_auc"] > 0.9  # the default kind
    write_jsonl(tmp_path / "pos.jsonl", [{"body": t} for t, label in examples if label == "hq"])
    write_jsonl(tmp_path / "neg.jsonl", [{"body": t} for t, label in examples if label == "lq"])
    result = CliRunner().invoke(app, ["quality", "train", str(tmp_path / "pos.jsonl"), str(tmp_path / "neg.jsonl"),
                                      "--text-field", "body", "--kind", "lm_ratio", "--out", str(tmp_path / "lm")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "lm.json").read_text())["train"]["hq"] > 0


def test_bad_label_fails_with_file_and_line(tmp_path):
    write_jsonl(tmp_path / "bad.jsonl", [{"text": "fine", "label": "hq"}, {"text": "odd", "label": "maybe"}])
    result = CliRunner().invoke(app, ["quality", "train", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "m")])
    assert result.exit_code == 2
    assert "bad.jsonl:2" in result.output and "maybe" in result.output
