"""llmweb adapter for langchain (see README)."""
