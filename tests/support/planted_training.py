"""A real-text build with bad documents planted that the rules let through, trained and traced (the test of
`factory trace` and benchmarks/trace_planted.py): `shuffled` pages are real English pages with the words of each
line shuffled (their loss should stand out high), `templated` pages fill one spam template, sentences and slots
varied enough to escape dedup (their loss should stand out low once the model has seen a few)."""

from __future__ import annotations

import gzip
import json
import random
import re
from pathlib import Path

import yaml

from datafactory.factory.catalog import build_catalog, query
from datafactory.factory.config import HeuristicsConfig, load_config
from datafactory.filters.heuristics import HeuristicFilter
from datafactory.mixtures.planner import Policy, plan
from datafactory.pipelines.registry import STAGES, preflight
from datafactory.trainer.train import train

SEQ_LEN = 128
BATCH = 8
MODEL = {"preset": "test", "dim": 128, "n_heads": 4, "n_kv_heads": 2}  # large enough to learn word order in minutes
TEMPLATE = [
    "Buy cheap {product} online today at {shop} and save up to {number} percent on every order.",
    "{shop} ships {product} to {city} in two days with free returns and no hidden fees.",
    "Our customers in {city} love our {product} because the price is always the lowest in town.",
    "Order now and get a second {product} for only {number} dollars while stocks last.",
    "Every {product} from {shop} comes with a {number} day money back guarantee.",
    "Call {shop} now to find the best {product} deals near {city} this week.",
    "Looking for {product} in {city}? {shop} has the widest choice and the friendliest staff.",
    "Sign up for the {shop} newsletter and receive a {number} dollar coupon for your next {product}.",
]
SLOTS = {"product": ["shoes", "watches", "phones", "sofas", "bikes", "laptops", "jackets", "lamps", "tents", "kettles"],
         "shop": ["MegaStore", "BestDeals", "ShopNow", "CheapMart", "ValueHub", "PrimeOutlet"],
         "city": ["Boston", "Denver", "Austin", "Seattle", "Miami", "Chicago", "Phoenix", "Dallas"]}


def real_pages(data: Path, count: int, rng: random.Random) -> list[dict]:
    with gzip.open(data / "web_sample.jsonl.gz", "rt", encoding="utf-8") as lines:
        pages = [record for line in lines if (record := json.loads(line))["lang"] == "en"
                 and 600 < len(record["text"]) < 12_000]
    return rng.sample(pages, count)


def shuffled(page: str, rng: random.Random) -> str:
    """Each sentence's words shuffled, its last word (with the full stop the rules look for) left last."""
    lines = []
    for line in page.splitlines():
        sentences = []
        for sentence in re.split(r"(?<=[.!?])\s+", line):
            words = sentence.split()
            inner = words[:-1]
            rng.shuffle(inner)
            sentences.append(" ".join(inner + words[-1:]))
        lines.append(" ".join(sentences))
    return "\n".join(lines)


def templated(rng: random.Random) -> str:
    sentences = rng.sample(TEMPLATE, 6)
    fills = [sentence.format(number=rng.randint(5, 95), **{slot: rng.choice(values) for slot, values in SLOTS.items()})
             for sentence in sentences]
    return "\n".join(" ".join(fills[i:i + 2]) for i in range(0, len(fills), 2))


def write_planted_corpus(data: Path, folder: Path, documents: int, planted_share: float, seed: int
                         ) -> dict[str, str]:
    """`documents` real pages, `planted_share` of them replaced by bad ones (half shuffled, half templated), as
    web.jsonl and build.yaml in `folder`; returns the planted doc_ids and their kind."""
    rng = random.Random(seed)
    pages = real_pages(data, documents, rng)
    planted = round(documents * planted_share / 2)
    rules = HeuristicFilter(HeuristicsConfig())
    truth: dict[str, str] = {}
    records = []
    for number, page in enumerate(pages):
        doc_id, text = f"page-{number:05d}", page["text"]
        bad = shuffled(text, rng)
        if sum(kind == "shuffled" for kind in truth.values()) < planted and rules.evaluate(bad, "en").keep:
            text, truth[doc_id] = bad, "shuffled"  # planted where the rules let it through, as the issue asks
        elif sum(kind == "templated" for kind in truth.values()) < planted and number % 2:
            text, truth[doc_id] = templated(rng), "templated"
        records.append({"id": doc_id, "text": text})
    rng.shuffle(records)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "web.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    config = {"inputs": [{"path": "web.jsonl", "source": "web"}], "seed": seed,
              "runner": {"direct_running_mode": "in_memory"}, "langid": {"allow": ["en"]},
              "tokenize": {"seq_len": SEQ_LEN, "rows_per_shard": 256, "tokenizer": {"vocab_size": 2000}}}
    (folder / "build.yaml").write_text(yaml.safe_dump(config))
    return truth


def build_train_and_trace(folder: Path, build: Path, steps: int, seed: int) -> str:
    """Every stage, a stable manifest of `steps` steps' tokens, a traced training run; returns the run's name."""
    config = load_config(folder / "build.yaml")
    preflight(config)
    for stage in STAGES:
        stage.execute(config, build)
    build_catalog(build)
    plan(build, Policy(total_tokens=steps * BATCH * SEQ_LEN, anneal_fraction=0.05, warmup_fraction=0.05, seed=seed,
                       max_epochs=20))
    model = build / "model.yaml"
    model.write_text(yaml.safe_dump(MODEL))
    train(build / "manifests" / "stable.json", model=model, out_dir=build / "runs" / "stable", batch_size=BATCH,
          compile=False, device="cpu", log_every=50, checkpoint_every=0)
    build_catalog(build)
    return "stable"


def precision_at(build: Path, run: str, truth: dict[str, str], kind: str, k: int) -> float:
    """Share of the top k documents of `run` (by excess: highest for shuffled, lowest for templated) that are
    planted of that kind."""
    order = "DESC" if kind == "shuffled" else "ASC"
    _, rows = query(build, f"SELECT doc_id FROM document_loss WHERE run = '{run}' ORDER BY excess {order} LIMIT {k}")
    return sum(truth.get(doc_id) == kind for (doc_id,) in rows) / k
