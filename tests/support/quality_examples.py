"""Small labelled quality examples (English sentences vs spam, a Chinese pair) for classifier tests."""

from __future__ import annotations

import random

SUBJECTS = ["The committee", "Researchers", "The museum", "Local farmers", "The new library", "Engineers"]
VERBS = ["published a detailed report on", "spent two years studying", "explained the history of", "reviewed"]
OBJECTS = ["regional water supplies", "medieval trade routes", "the migration of birds", "solar energy costs"]
DETAILS = [
    "The findings were discussed at a public meeting in the spring.",
    "Several experts noted that the evidence was still incomplete.",
    "A second study is planned for next year, with more participants.",
    "The authors thanked the volunteers who collected the data.",
]
SPAM = [
    "BUY NOW!!! cheap pills $$$ click here",
    "WIN a FREE iPhone!!! claim your prize now >>> http://spam.example",
    "hot singles in your area click click click",
    "best casino bonus 100% free spins !!! register now",
    "lose 20kg in 2 weeks miracle diet order today!!!",
    "URGENT your account suspended verify password here",
]
ZH_HQ = "研究人员花了两年时间研究区域水资源，并在春季的公开会议上讨论了研究结果。"
ZH_SPAM = "澳门赌场 在线注册 送彩金 点击 领取 免费 彩票 !!!"


def synthetic_examples(n: int = 40, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        sentence = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}."
        examples.append((f"{sentence} {' '.join(rng.sample(DETAILS, 2))}", "hq"))
        examples.append((" ".join(rng.sample(SPAM, 3)), "lq"))
    examples += [(ZH_HQ, "hq"), (ZH_SPAM, "lq")] * 3
    return examples
