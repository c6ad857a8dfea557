"""raytune_llm.cli."""
