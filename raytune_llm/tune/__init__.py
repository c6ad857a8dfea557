"""raytune_llm.tune."""
