"""Prompts of a multiple-choice question, in the two ways benchmarks are usually scored.

``eval_style: llamafactory`` (the default) is LLaMA-Factory's evaluator: the question and its
options, then "Answer:" (zh "答案："), as a user turn of the run's chat template; each of the
``n_shot`` solved examples, drawn at random from the subject's dev split (seeded by ``seed``, one
draw per question), is an earlier user turn answered by its letter; the subject preamble opens the
first turn. The score is the logit of the letter token ("A") after the prompt.

``eval_style: harness`` is lm-evaluation-harness's ``mmlu`` task (``ceval-valid`` wording for
``lang: zh``): plain text with no chat template and no special tokens, the preamble, the first
``n_shot`` dev rows in file order each followed by " " and its letter, separated by blank lines,
then the question; the score is the log-likelihood of the continuation " A" (a space first).
Where " A" is one token that is the logit of that token; where the tokenizer splits it (" ",
"A"), the shared first tokens join the prompt, which gives the harness's ranking exactly.

    >>> print(harness_context(Question("1 + 1 =", ("1", "2", "3", "4"), "B"), [], "maths", "en"))
    The following are multiple choice questions (with answers) about maths.
    <BLANKLINE>
    1 + 1 =
    A. 1
    B. 2
    C. 3
    D. 4
    Answer:
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..data.templates import Message, Template
from ..utils.errors import UserError
from .tasks import CHOICES, Question

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

STYLES = ("llamafactory", "harness")
PREAMBLE = {
    "en": "The following are multiple choice questions (with answers) about {subject}.\n\n",
    "zh": "以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。\n\n",
}
ANSWER = {"en": "\nAnswer:", "zh": "\n答案："}


def question_text(q: Question, lang: str, *, strip: bool = False) -> str:
    """The question, its four options one per line, and the answer cue ("Answer:")."""
    head = q.question.strip() if strip else q.question
    options = "".join(f"\n{c}. {o}" for c, o in zip(CHOICES, q.options, strict=True))
    return head + options + ANSWER[lang]


def pick_shots(dev: Sequence[Question], k: int, style: str, seed: int, where: str) -> list:
    """The k solved examples of a question: the first k (harness), or k drawn at random
    (LLaMA-Factory), the draw fixed by ``seed`` and the question (``where``) alone, so that
    batching and the number of actors never change a prompt."""
    if style == "harness":
        return list(dev[:k])
    return random.Random(f"{seed}/{where}").sample(list(dev), k)


def chat_messages(q: Question, shots: Sequence[Question], subject: str, lang: str) -> list:
    """LLaMA-Factory's conversation: each shot a user turn answered by its letter, then ``q``."""
    messages: list[Message] = []
    for shot in shots:
        messages.append({"role": "user", "content": question_text(shot, lang)})
        messages.append({"role": "assistant", "content": shot.answer})
    messages.append({"role": "user", "content": question_text(q, lang)})
    messages[0]["content"] = PREAMBLE[lang].format(subject=subject) + messages[0]["content"]
    return messages


def harness_context(q: Question, shots: Sequence[Question], subject: str, lang: str) -> str:
    """lm-evaluation-harness's plain-text context: preamble, solved shots, then ``q``."""
    parts = [f"{question_text(s, lang, strip=True)} {s.answer}" for s in shots]
    parts.append(question_text(q, lang, strip=True))
    return PREAMBLE[lang].format(subject=subject) + "\n\n".join(parts)


def encode_chat(
    messages: Sequence[Message], template: Template, tokenizer: PreTrainedTokenizerBase
) -> tuple[list[int], list[int]]:
    """(prompt ids, the A-D token ids) of a LLaMA-Factory-style prompt.

    The letter ids are LLaMA-Factory's: the last token of each letter encoded alone.
    """
    ids = template.encode_prompt(tokenizer, list(messages))
    letters = [tokenizer.encode(c, add_special_tokens=False)[-1] for c in CHOICES]
    return ids, letters


def encode_harness(context: str, tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """(prompt ids, the A-D token ids) of a harness-style prompt.

    As the harness does, each continuation is what encoding context + " A" adds after the
    context's own tokens; tokens all four share are moved into the prompt.

    Raises:
        UserError: When the four continuations do not end in one distinct token each.
    """
    ids = tokenizer.encode(context, add_special_tokens=False)
    conts = [tokenizer.encode(f"{context} {c}", add_special_tokens=False)[len(ids) :]
             for c in CHOICES]  # fmt: skip
    shared = 0
    while all(len(c) > shared + 1 for c in conts) and len({c[shared] for c in conts}) == 1:
        shared += 1
    tails = [c[shared:] for c in conts]
    if (
        any(len(t) != 1 for t in tails)
        or len({t[0] for t in tails}) != 4
        or any(c[:shared] != conts[0][:shared] for c in conts)
    ):
        raise UserError(
            f"eval_style harness: the tokenizer encodes the answers ' A'..' D' as {conts}, not as "
            "one distinct last token each; use eval_style: llamafactory"
        )
    return ids + conts[0][:shared], [t[0] for t in tails]
