"""The default embedder is the real all-MiniLM-L6-v2, offline, from the installed package."""

from __future__ import annotations

import numpy as np
import pytest

import llmweb_plugin as lw
from llmweb_plugin.embeddings import minilm_model_path


def test_default_embedder_is_a_shared_lazy_singleton(embedder):
    assert lw.default_embedder() is embedder
    assert (embedder.name, embedder.dim) == ("all-MiniLM-L6-v2", 384)
    assert isinstance(embedder, lw.Embedder)


def test_embeddings_are_real_and_normalised(embedder):
    E = embedder.embed(["Bitcoin will rise.", "Bitcoin will go up.", "I like green tea."])
    assert E.shape == (3, 384) and E.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, atol=1e-5)
    sim = E @ E.T
    assert sim[0, 1] > 0.7 > sim[0, 2]  # paraphrases are close, unrelated text is not
    assert embedder.embed([]).shape == (0, 384)


def test_batching_gives_the_same_vectors(embedder):
    texts = [f"sentence number {i} about markets" for i in range(70)]
    one = np.stack([embedder.embed([t])[0] for t in texts[:5]])
    np.testing.assert_allclose(embedder.embed(texts)[:5], one, atol=1e-5)


def test_missing_model_package_names_the_install_command():
    with pytest.raises(ImportError, match=r"pip install torch==2\.13\.0"):
        minilm_model_path("no_such_model_package_xyz")


def test_declared_dim_mismatch_is_reported():
    emb = lw.SentenceTransformerEmbedder(minilm_model_path(), name="x", dim=10)
    with pytest.raises(ValueError, match="dim=10.*384"):
        emb.embed(["a"])
