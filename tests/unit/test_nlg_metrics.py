"""predict's BLEU-4 and ROUGE equal the formula LLaMA-Factory uses, computed here directly."""

from __future__ import annotations

import jieba
import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from rouge_chinese import Rouge

from raytune_llm.infer.nlg_metrics import NlgScores

PAIRS = [  # (prediction, reference)
    ("今天天气很好，我们去公园散步。", "今天天气不错，我们去公园走走。"),
    ("c a t", "t a c"),
    ("The cat sat on the mat.", "The cat is sitting on the mat."),
    ("", "something"),  # no words on one side: ROUGE 0
    ("3", "3"),
    ("机器学习 is fun", "机器学习很有趣"),
]


def direct(prediction: str, reference: str) -> dict[str, float]:
    hyp, ref = list(jieba.cut(prediction)), list(jieba.cut(reference))
    if not " ".join(hyp).split() or not " ".join(ref).split():
        rouge = {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    else:
        found = Rouge().get_scores(" ".join(hyp), " ".join(ref))[0]
        rouge = {k: found[k]["f"] for k in ("rouge-1", "rouge-2", "rouge-l")}
    bleu = sentence_bleu(
        [list(reference)], list(prediction), smoothing_function=SmoothingFunction().method3
    )
    return {k: round(v * 100, 4) for k, v in {"bleu-4": bleu, **rouge}.items()}


def test_scores_equal_the_direct_computation():
    scores = NlgScores()
    expected = [direct(p, r) for p, r in PAIRS]
    assert [scores.add(p, r) for p, r in PAIRS] == expected
    result = scores.result()
    names = ("bleu-4", "rouge-1", "rouge-2", "rouge-l")
    assert set(result) == {f"predict_{n}" for n in names}
    for key, value in result.items():
        name = key.removeprefix("predict_")
        assert value == pytest.approx(sum(e[name] for e in expected) / len(PAIRS), abs=1e-12)
    assert expected[3]["rouge-1"] == 0.0 and expected[4]["rouge-1"] == 100.0
    assert 0 < result["predict_bleu-4"] < 100 and 0 < result["predict_rouge-l"] < 100


def test_no_examples_score_zero():
    assert set(NlgScores().result().values()) == {0.0}
