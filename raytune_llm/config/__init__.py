"""raytune_llm.config."""
