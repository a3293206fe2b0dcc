"""Shared fixtures: the real offline embedder and fresh embedded Qdrant stores."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

import llmweb_plugin as lw  # noqa: E402


@pytest.fixture(scope="session")
def embedder() -> lw.SentenceTransformerEmbedder:
    """The real all-MiniLM-L6-v2 embedder, loaded once per test session."""
    emb = lw.default_embedder()
    emb.embed(["warm up"])
    return emb


@pytest.fixture()
def store(embedder):
    """A fresh in-memory WebStore with the real embedder."""
    s = lw.WebStore(":memory:", embedder=embedder)
    yield s
    s.close()
