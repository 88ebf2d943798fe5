"""Eval sets: JSON Lines and Parquet items with their configured fields, and one located error per unreadable file."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datafactory.factory.config import EvalSetSpec
from datafactory.filters.eval_sets import EvalItem, EvalSetError, read_eval_set

ZH_QUESTION = "下列哪一项最能解释为什么古老的港口小镇在河流淤塞、大船无法再抵达码头之后，仍然长期与内陆村庄保持贸易往来"


def test_eval_files_read_with_located_errors(tmp_path):
    good = tmp_path / "mmlu.jsonl"
    good.write_text(json.dumps({"id": 7, "question": "Q?", "choices": ["x", "y"], "answer": 1}) + "\n\n"
                    + json.dumps({"question": "Q2?"}) + "\n")
    spec = EvalSetSpec(path=str(good), name="mmlu", fields=["question", "choices", "answer"])
    assert read_eval_set(spec, good) == [EvalItem("mmlu", "7", ("Q?", "x y", "1")),
                                         EvalItem("mmlu", "line 3", ("Q2?", "", ""))]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "fine"}\n{"question": \n')
    with pytest.raises(EvalSetError, match=r"bad.jsonl: line 2: malformed JSON"):
        read_eval_set(spec.model_copy(update={"fields": ["question"]}), bad)
    with pytest.raises(EvalSetError, match="no item has the field.*prompt"):
        read_eval_set(spec.model_copy(update={"fields": ["question", "prompt"]}), good)
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b'{"question": "ok"}\n\xff\xfe\x00junk\n')
    with pytest.raises(EvalSetError, match="binary.jsonl: line 2: not UTF-8"):
        read_eval_set(spec.model_copy(update={"fields": ["question"]}), binary)
    with pytest.raises(EvalSetError, match="file not found"):
        read_eval_set(spec, tmp_path / "missing.jsonl")


def test_parquet_eval_sets(tmp_path):
    path = tmp_path / "cmmlu.parquet"
    pq.write_table(pa.table({"question": [ZH_QUESTION], "answer": ["A"]}), path)
    spec = EvalSetSpec(path=str(path), name="cmmlu", fields=["question", "answer"])
    assert read_eval_set(spec, path) == [EvalItem("cmmlu", "row 0", (ZH_QUESTION, "A"))]
