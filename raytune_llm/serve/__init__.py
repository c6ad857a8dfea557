"""raytune_llm.serve."""
