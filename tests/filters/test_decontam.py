"""Decontamination matching: items found verbatim, with noise, by CJK characters, in fragments; controls and short
overlaps left alone; spans cut with their margin; the index's round trip and address."""

from __future__ import annotations

from datafactory.factory.config import DecontaminateConfig
from datafactory.filters.decontam import ContaminationIndex, Decontaminator, index_address, remove_spans
from datafactory.filters.eval_sets import EvalItem

QUESTION = ("Which of the following best explains why the ancient harbour town kept trading with inland villages "
            "long after the river had silted up and the larger ships could no longer reach its quays")
ZH_QUESTION = "下列哪一项最能解释为什么古老的港口小镇在河流淤塞、大船无法再抵达码头之后，仍然长期与内陆村庄保持贸易往来"
FILLER = ("Local news from the valley this week covered the weather, a school concert, road repairs on the "
          "northern bypass and the opening hours of the public library during the holidays. ")
ZH_FILLER = "本周山谷地区的新闻报道了天气变化、学校音乐会、北部绕城公路的维修工程以及节假日期间公共图书馆的开放时间。"


def judge(texts: list[str], items: list[EvalItem], **settings) -> list:
    config = DecontaminateConfig(**settings)
    return Decontaminator(ContaminationIndex.build(items, config), config).findings(texts)


def item(text: str, item_id: str = "q1", answer: str = "B") -> EvalItem:
    return EvalItem("mmlu", item_id, (text, answer))


def test_verbatim_noisy_and_clean_documents():
    noisy = QUESTION.upper().replace(" ", "  \n ").replace("harbour town", "harbour-town,")
    found = judge([FILLER + QUESTION + " " + FILLER, FILLER + noisy, FILLER * 3], [item(QUESTION)])
    assert [f.contaminated for f in found] == [True, True, False]
    assert found[0].score == 1.0 and found[0].item == 0
    assert found[2].score == 0.0 and found[2].item is None


def test_cjk_items_are_matched_by_characters_through_punctuation_changes():
    noisy = ZH_QUESTION.replace("，", ", ").replace("、", " ")
    found = judge([ZH_FILLER + noisy + ZH_FILLER, ZH_FILLER * 4], [item(ZH_QUESTION)])
    assert [f.contaminated for f in found] == [True, False]


def test_fragments_count_by_the_share_of_the_item_they_cover():
    words = QUESTION.split()
    fragment = " ".join(words[: int(len(words) * 0.7)])
    assert judge([FILLER + fragment], [item(QUESTION)])[0].contaminated
    strict = judge([FILLER + fragment], [item(QUESTION)], min_overlap=0.8)[0]
    assert not strict.contaminated and 0.6 < strict.score < 0.8


def test_shared_six_word_phrases_are_not_contamination():
    words = QUESTION.split()
    control = " ".join(words[i] for i in range(6)) + " " + FILLER + " ".join(words[10:16])
    finding = judge([control], [item(QUESTION)])[0]
    assert not finding.contaminated and finding.score == 0.0


def test_short_fields_must_be_found_whole():
    short = "the capital city of the northern province is"  # 8 words: under the 13-gram, at the minimum
    items = [EvalItem("quiz", "s1", (short,))]
    assert judge([FILLER + short + " Tromso."], items)[0].contaminated
    assert not judge([FILLER + "the capital city of the northern region"], items)[0].contaminated
    assert not judge([FILLER + "capital"], [EvalItem("quiz", "s2", ("capital",))])[0].contaminated  # too short


def test_spans_are_cut_with_their_margin_and_merged():
    text = "a" * 300 + " " + QUESTION + " " + "b" * 300
    finding = judge([text], [item(QUESTION)], mode="remove_span")[0]
    start, end = finding.spans[0][0], finding.spans[-1][1]
    assert text[start:end].startswith("Which") and text[start:end].endswith("quays")
    cut, removed = remove_spans(text, finding.spans, margin=200)
    assert "harbour" not in cut and cut.startswith("a" * 100) and cut.endswith("b" * 100)
    assert removed == len(text) - len(cut) + 1  # the two pieces left are joined by one newline
    assert remove_spans("abcdef", ((1, 2), (2, 4)), 0) == ("a\nef", 3)


def test_index_round_trip_and_address(tmp_path):
    config = DecontaminateConfig()
    index = ContaminationIndex.build([item(QUESTION), item(ZH_QUESTION, "q2")], config)
    loaded = ContaminationIndex.load(index.save(tmp_path / "index"))
    assert loaded.items.to_pylist() == [{"eval_set": "mmlu", "item_id": "q1"}, {"eval_set": "mmlu", "item_id": "q2"}]
    assert Decontaminator(loaded, config).findings([ZH_FILLER + ZH_QUESTION])[0].item == 1
    assert index_address(config, "files-a") != index_address(config, "files-b")
    assert index_address(config, "files-a") != index_address(config.model_copy(update={"ngram": 12}), "files-a")
    assert index_address(config, "files-a") == index_address(config.model_copy(update={"mode": "remove_span"}),
                                                             "files-a")


def test_index_facts_name_every_configured_set_even_an_empty_one():
    index = ContaminationIndex.build([item(QUESTION)], DecontaminateConfig())
    facts = index.facts(["mmlu", "gsm8k"])
    assert facts["items"] == {"mmlu": 1, "gsm8k": 0} and facts["entries"] > 10 and facts["bytes"] > 0
