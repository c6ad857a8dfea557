"""raytune_llm.webui."""
