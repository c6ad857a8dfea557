"""Generation at the model layer: a plain causal LM decodes with no inference backend around it.

This is what a training stage sampling from its policy (online RL) uses, so it is tested here
without infer/: greedy ids equal transformers' own greedy ``generate``, a left-padded batch
gives each row what it gets alone, and seeded sampling repeats.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from raytune_llm.model.generate.decode import Decoder
from raytune_llm.model.generate.sampling import SamplingParams

NEW = 8
GREEDY = SamplingParams(max_new_tokens=NEW, do_sample=False)


@pytest.fixture(scope="module")
def decoder(tiny_llama_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    return Decoder(model, tokenizer, stop_ids=[], pad_id=0)  # no stop: always NEW tokens


def _ids(decoder: Decoder, text: str) -> list[int]:
    return decoder.tokenizer.encode(text, add_special_tokens=True)


def test_greedy_ids_equal_transformers_generate(decoder):
    prompt = _ids(decoder, "one two three four")
    ours = decoder.generate([prompt], GREEDY)[0]
    with torch.inference_mode():
        theirs = decoder.model.generate(
            torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False, repetition_penalty=1.0,
        )  # fmt: skip
    assert ours.token_ids == theirs[0, len(prompt) :].tolist()
    assert (ours.completion_tokens, ours.finish_reason) == (NEW, "length")
    assert ours.text == decoder.text(ours.token_ids)


def test_a_padded_batch_gives_each_row_its_own_answer(decoder):
    prompts = [_ids(decoder, "hi"), _ids(decoder, "a much longer prompt than the first one")]
    params = [GREEDY, GREEDY.with_overrides(repetition_penalty=1.3, max_new_tokens=5)]
    together = decoder.generate(prompts, params)
    alone = [decoder.generate([p], s)[0] for p, s in zip(prompts, params, strict=True)]
    assert [c.token_ids for c in together] == [c.token_ids for c in alone]
    assert [c.completion_tokens for c in together] == [NEW, 5]


def test_seeded_sampling_repeats_and_stop_ids_end_answers(decoder):
    prompt = _ids(decoder, "count: one two")
    sample = SamplingParams(max_new_tokens=NEW, temperature=1.0, top_p=0.9, top_k=20, seed=3)
    first = decoder.generate([prompt], sample)[0]
    assert decoder.generate([prompt], sample)[0].token_ids == first.token_ids
    stopping = Decoder(decoder.model, decoder.tokenizer, stop_ids=[first.token_ids[2]], pad_id=0)
    cut = stopping.generate([prompt], sample)[0]
    assert cut.finish_reason == "stop" and cut.token_ids == first.token_ids[:2]
