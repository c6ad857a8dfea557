"""Inference engines shared by chat, serve, predict and eval (see :mod:`.engine`)."""
