"""llmweb adapter for llamaindex (see README)."""
