"""raytune_llm.utils."""
