"""raytune_llm.model."""
