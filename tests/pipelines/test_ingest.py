"""Ingest: blocklisted URLs end as dropped (not invalid) ledger rows, PII is redacted, bad lines are invalid."""

import json

import pyarrow.parquet as pq

from datafactory.factory.config import parse_config
from datafactory.pipelines.registry import run_stage_named


def test_ingest_drops_blocklisted_urls_and_redacts_pii(tmp_path):
    lines = [
        json.dumps({"id": "a", "text": "Mail me at someone@example.org from 10.1.2.3.", "url": "https://ok.example/a"}),
        json.dumps({"id": "b", "text": "Win big now", "url": "https://www.casino.example/win"}),
        json.dumps({"id": "c", "text": "Cheap pills", "url": "https://shop.example/viagra-deals"}),
        "{not json",
    ]
    (tmp_path / "docs.jsonl").write_text("\n".join(lines) + "\n")
    config = parse_config(
        {
            "inputs": [{"path": "docs.jsonl", "source": "web"}],
            "ingest": {"url_filter": {"domains": ["casino.example"], "banned_words": ["viagra"]}},
            "runner": {"direct_running_mode": "in_memory"},
        },
        base_dir=str(tmp_path),
    )
    run_stage_named("ingest", config, tmp_path / "build")
    ledger = pq.read_table(tmp_path / "build" / "ledger").to_pylist()
    by_id = {row["doc_id"]: row for row in ledger}
    blocked = by_id["b"]
    assert (blocked["status"], blocked["stage"], blocked["reason"]) == ("dropped", "ingest", "url_blocked_domain")
    assert (by_id["c"]["status"], by_id["c"]["reason"]) == ("dropped", "url_banned_word")
    invalid = [row for row in ledger if row["status"] == "invalid"]
    assert len(invalid) == 1 and invalid[0]["location"] == "line 4" and "malformed JSON" in invalid[0]["reason"]
    kept = pq.read_table(tmp_path / "build" / "stages" / "ingest").to_pylist()
    text = {row["doc_id"]: row["text"] for row in kept if row["keep"]}
    assert text == {"a": "Mail me at email@example.com from 192.0.2.1."}
