"""Generation from a causal LM, for every layer that needs it (inference, serving, online RL).

* :mod:`.sampling` — per-answer sampling settings and one sampling step for rows that differ;
* :mod:`.decode` — :class:`~.decode.Decoder`: a batch of prompts decoded together with a KV
  cache, streamed or collected;
* :mod:`.continuous` — continuous batching: requests join and leave one running batch.

No chat templates, adapters or HTTP here: prompts come in as token ids.
"""
