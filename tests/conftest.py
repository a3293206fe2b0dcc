"""Shared fixtures: the real offline embedder, a fast hash embedder, fresh embedded stores."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
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


class HashEmbedder:
    """Deterministic unit 16-d vectors from each text's SHA-256, with no model to load: for tests
    of plumbing (counts, ids, persistence, files), not of meaning. Equal texts, equal vectors."""

    name = "hash-test"
    dim = 16

    def embed(self, texts):
        out = np.zeros((len(texts), 16), np.float32)
        for i, t in enumerate(texts):
            h = hashlib.sha256(t.encode("utf-8")).digest()[:16]
            out[i] = np.frombuffer(h, np.uint8).astype(np.float32) - 127.5
        # unit norm, like MiniLM: qdrant-client's local mode persists cosine vectors
        # unnormalised and reads them back so after a reopen
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def _hash_embedder_source() -> str:
    # read from this file: inspect.getsource cannot tell tests/conftest.py from
    # tests/integrations/conftest.py (both are the module "conftest")
    text = Path(__file__).read_text()
    start = text.index("class HashEmbedder:")
    return "import hashlib\nimport numpy as np\n\n" + text[start:text.index("\n\n\n", start)] + "\n"


#: the class's code, to rebuild it in a subprocess: ``exec(HashEmbedder.SOURCE)``
HashEmbedder.SOURCE = _hash_embedder_source()


@pytest.fixture(scope="session")
def hash_embedder() -> HashEmbedder:
    """A :class:`HashEmbedder`; ``type(hash_embedder).SOURCE`` rebuilds it in a subprocess."""
    return HashEmbedder()
