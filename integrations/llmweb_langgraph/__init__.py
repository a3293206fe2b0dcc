"""llmweb adapter for langgraph (see README)."""
