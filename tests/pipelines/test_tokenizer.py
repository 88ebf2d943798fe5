"""The tokenizer model is byte-identical wherever and whenever it is trained from the same sample."""

from factory.config import TokenizerConfig
from pipelines.tokenizer import train_sentencepiece

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
