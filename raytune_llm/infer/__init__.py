"""Inference backends shared by chat, serve, predict and eval (see :mod:`.backend`); the
decoding itself is :mod:`raytune_llm.model.generate`, which training may use too."""
