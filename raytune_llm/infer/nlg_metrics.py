"""BLEU-4 and ROUGE-1/2/L of generated answers against references, as LLaMA-Factory scores them.

Per example: ROUGE F-scores (rouge-chinese) of the jieba-segmented texts joined by spaces (0 when
either side has no words), and BLEU-4 (nltk ``sentence_bleu``, ``SmoothingFunction().method3``)
over characters; each x100 and rounded to 4 places. The result is the mean over examples, under
LLaMA-Factory's ``predict_bleu-4``, ``predict_rouge-1``, ``predict_rouge-2``, ``predict_rouge-l``.

    scores = NlgScores()
    scores.add("今天天气很好", "今天天气不错")
    scores.result()  # {"predict_bleu-4": ..., "predict_rouge-1": ..., ...}

The packages are the ``metrics`` extra (``pip install 'raytune-llm[metrics]'``).
"""

from __future__ import annotations

import logging

KEYS = ("bleu-4", "rouge-1", "rouge-2", "rouge-l")
MISSING = "BLEU-4 and ROUGE need nltk, jieba and rouge-chinese: pip install 'raytune-llm[metrics]'"


def metrics_available() -> bool:
    """Whether nltk, jieba and rouge-chinese can be imported."""
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("nltk", "jieba", "rouge_chinese"))


class NlgScores:
    """Running per-example scores (see the module docstring)."""

    def __init__(self) -> None:
        import jieba
        from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
        from rouge_chinese import Rouge

        jieba.setLogLevel(logging.WARNING)  # no "Building prefix dict" lines
        self._cut, self._bleu, self._rouge = jieba.cut, sentence_bleu, Rouge()
        self._smooth = SmoothingFunction().method3
        self.scores: dict[str, list[float]] = {k: [] for k in KEYS}

    def add(self, prediction: str, reference: str) -> dict[str, float]:
        """Score one example; returns its scores (x100)."""
        hypothesis = " ".join(self._cut(prediction))
        ref = " ".join(self._cut(reference))
        if not hypothesis.split() or not ref.split():
            rouge = {k: 0.0 for k in KEYS[1:]}
        else:
            found = self._rouge.get_scores(hypothesis, ref)[0]
            rouge = {k: found[k]["f"] for k in KEYS[1:]}
        bleu = self._bleu([list(reference)], list(prediction), smoothing_function=self._smooth)
        one = {k: round(v * 100, 4) for k, v in {"bleu-4": bleu, **rouge}.items()}
        for k, v in one.items():
            self.scores[k].append(v)
        return one

    def result(self) -> dict[str, float]:
        """The mean of each score over the examples added, as ``predict_<name>``."""
        return {f"predict_{k}": sum(v) / len(v) if v else 0.0 for k, v in self.scores.items()}
