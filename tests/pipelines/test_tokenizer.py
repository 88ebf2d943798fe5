"""The tokenizer model is byte-identical wherever and whenever it is trained from the same sample."""

from datafactory.factory.config import TokenizerConfig
from datafactory.pipelines.tokenizer import train_sentencepiece

LINES = [f"Paragraph {i}: the quick brown fox jumps over the lazy dog. 敏捷的棕色狐狸跳过了懒狗。" for i in range(300)]


def test_same_sample_gives_the_same_model_bytes(tmp_path):
    config = TokenizerConfig(vocab_size=400)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    train_sentencepiece(LINES, tmp_path / "a" / "tokenizer.model", config)
    train_sentencepiece(LINES, tmp_path / "b" / "tokenizer.model", config)
    first = (tmp_path / "a" / "tokenizer.model").read_bytes()
    assert first == (tmp_path / "b" / "tokenizer.model").read_bytes()
    assert str(tmp_path).encode() not in first


def test_language_budgets_flatten_toward_equal_shares():
    from datafactory.pipelines.tokenizer import Candidate, language_budgets

    pool = [Candidate(i, f"en{i}", "en", 90) for i in range(10)] + [Candidate(99, "zh0", "zh", 100)]
    natural = language_budgets(pool, 1000, alpha=1.0)
    assert natural == {"en": 900, "zh": 100}
    balanced = language_budgets(pool, 1000, alpha=0.0)
    assert balanced == {"en": 500, "zh": 500}
    assert 100 < language_budgets(pool, 1000, alpha=0.5)["zh"] < 500


def test_split_sample_holds_out_unseen_documents_per_language():
    from datafactory.pipelines.tokenizer import Candidate, split_sample

    pool = sorted([Candidate(i, f"en{i}", "en", 100) for i in range(20)]
                  + [Candidate(100 + i, f"zh{i}", "zh", 100) for i in range(20)], key=lambda c: c.order)
    chosen, heldout = split_sample(pool, TokenizerConfig(sample_chars=1000, language_alpha=0.0, heldout_chars=150))
    assert heldout == {"en": ["en0"], "zh": ["zh0"]}  # 150 chars allowed, one 100-char document fits
    assert chosen == {f"en{i}" for i in range(1, 6)} | {f"zh{i}" for i in range(1, 6)}
    # a small corpus keeps at least nine tenths of each language for training
    _, small = split_sample(pool, TokenizerConfig(sample_chars=10_000, heldout_chars=10_000))
    assert small == {"en": ["en0", "en1"], "zh": ["zh0", "zh1"]}


def test_a_vocabulary_the_corpus_cannot_fill_is_a_config_error_naming_the_key(tmp_path):
    import pytest

    from datafactory.factory.config import ConfigError

    lines = ["".join(chr(0x4E00 + 7 * i + j) for j in range(30)) for i in range(200)]  # ~1,700 distinct characters
    with pytest.raises(ConfigError, match=r"tokenize\.tokenizer\.vocab_size 300 does not fit this corpus: .*"
                       r"smaller than required_chars"):
        train_sentencepiece(lines, tmp_path / "m.model", TokenizerConfig(vocab_size=300, character_coverage=1.0))


def test_a_build_that_kept_nothing_says_so_instead_of_failing_in_sentencepiece(tmp_path):
    import pytest
    from support.builds import write_stage_output

    from datafactory.factory.config import parse_config
    from datafactory.pipelines.registry import run_stage_named
    from datafactory.pipelines.tokenizer import EmptyCorpus

    write_stage_output("quality", tmp_path, [])
    config = parse_config({"inputs": [{"path": "unused", "source": "web"}],
                           "runner": {"direct_running_mode": "in_memory"}})
    with pytest.raises(EmptyCorpus, match=r"no document reached the tokenizer stage .*SELECT stage, status, reason"):
        run_stage_named("tokenizer", config, tmp_path)
