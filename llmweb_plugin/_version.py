"""The package version, in a module of its own so subpackages can read it without importing
``llmweb_plugin`` itself (which imports them)."""

__version__ = "0.1.0"
