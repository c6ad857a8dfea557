"""raytune_llm.eval."""
