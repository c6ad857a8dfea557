"""raytune_llm.data."""
