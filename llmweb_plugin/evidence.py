"""Text evidence of what converged: phrases most agents share, and near-duplicate posts.

Numbers say *that* a web collapsed; these say *what* it collapsed onto.

- :func:`shared_ngrams`: word n-grams that appear in the posts of most agents;
- :func:`near_duplicate_share`: the share of posts that nearly repeat another agent's post;
- :func:`text_evidence`: both, for one step's posts.

Tokens are lower-cased words (``\\w+`` with inner apostrophes, e.g. ``don't``); punctuation is
dropped, and n-grams never cross from one post into the next.

Example:
    >>> posts = {"a": ["The sky is blue today."], "b": ["I think the sky is blue."],
    ...          "c": ["Grass is green."]}
    >>> [(g.ngram, g.n_agents) for g in shared_ngrams(posts, n=3)]
    [('the sky is', 2), ('sky is blue', 2)]
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "COSINE_THRESHOLD",
    "JACCARD_THRESHOLD",
    "NearDuplicates",
    "SharedNgram",
    "TextEvidence",
    "near_duplicate_share",
    "shared_ngrams",
    "text_evidence",
]

logger = logging.getLogger(__name__)

#: Cosine similarity at or above which two embedded posts are near-duplicates. With
#: all-MiniLM-L6-v2, rewordings of one sentence typically score 0.85-0.95 and unrelated sentences
#: on one topic 0.3-0.7; 0.9 asks for "the same sentence, lightly edited".
COSINE_THRESHOLD = 0.9
#: Jaccard similarity of word-3-gram sets at or above which two posts are near-duplicates.
#: 0.6 asks for most phrases shared: changing the last word of a 12-word post keeps 9/11 = 0.82,
#: changing a middle word 7/13 = 0.54 (not a near-duplicate), repeating it plus one extra
#: sentence of 4 words 10/14 = 0.71.
JACCARD_THRESHOLD = 0.6

_WORD = re.compile(r"\w+(?:'\w+)*", re.UNICODE)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def _texts(x: object, name: str) -> list[str]:
    if isinstance(x, (str, bytes)) or not isinstance(x, Sequence):
        raise TypeError(f"{name} must be a sequence of strings (one per post), not "
                        f"{type(x).__name__}; wrap a single post in a list")
    out = list(x)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"{name}[{i}] must be a str; got {type(t).__name__}")
    return out


@dataclass(frozen=True, kw_only=True)
class SharedNgram:
    """One n-gram used by several agents.

    Attributes:
        ngram: the words joined by single spaces, e.g. ``"the sky is"``.
        n_agents: agents with at least one post containing it.
        agents: those agents, sorted by name.
        count: occurrences over all posts of all agents.
    """

    ngram: str
    n_agents: int
    agents: tuple[str, ...]
    count: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"ngram": self.ngram, "n_agents": self.n_agents, "agents": list(self.agents),
                "count": self.count}


def shared_ngrams(texts_by_agent: Mapping[str, Sequence[str]], n: int = 3,
                  min_agents: int | None = None, top: int | None = 10) -> list[SharedNgram]:
    """Word n-grams that appear in the posts of at least ``min_agents`` agents.

    Args:
        texts_by_agent: agent -> that agent's posts (e.g. of one step).
        n: n-gram length in words, >= 1.
        min_agents: fewest agents that must use an n-gram; default a strict majority of the
            agents given, and never fewer than 2 (so one agent alone shares nothing).
        top: keep the first ``top`` (``None``: all).

    Returns:
        :class:`SharedNgram` sorted by agents (most first), then count (most first), then the
        n-gram's first position in the input (so ties keep reading order).

    Raises:
        TypeError: if a value is a single string rather than a sequence of posts, or not str.
        ValueError: if ``n``, ``min_agents`` or ``top`` is not a positive integer.
    """
    if not isinstance(texts_by_agent, Mapping):
        raise TypeError("texts_by_agent must be a mapping agent -> sequence of posts; got "
                        f"{type(texts_by_agent).__name__}")
    for name, val in (("n", n), ("min_agents", min_agents), ("top", top)):
        if val is None and name != "n":
            continue
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ValueError(f"{name} must be a positive integer; got {val!r}")
    n_ag = len(texts_by_agent)
    need = max(2, n_ag // 2 + 1) if min_agents is None else min_agents
    users: dict[tuple[str, ...], set[str]] = {}
    count: dict[tuple[str, ...], int] = {}
    first: dict[tuple[str, ...], int] = {}
    for agent, posts in texts_by_agent.items():
        for text in _texts(posts, f"texts_by_agent[{agent!r}]"):
            for g in _ngrams(_words(text), n):
                users.setdefault(g, set()).add(str(agent))
                count[g] = count.get(g, 0) + 1
                first.setdefault(g, len(first))
    hits = [g for g, u in users.items() if len(u) >= need]
    hits.sort(key=lambda g: (-len(users[g]), -count[g], first[g]))
    if top is not None:
        hits = hits[:top]
    return [SharedNgram(ngram=" ".join(g), n_agents=len(users[g]), agents=tuple(sorted(users[g])),
                        count=count[g]) for g in hits]


@dataclass(frozen=True, kw_only=True)
class NearDuplicates:
    """Which posts nearly repeat a post of *another* agent.

    Attributes:
        share: ``n_near_duplicates / n_posts`` (NaN with no posts).
        n_posts: posts given.
        n_near_duplicates: posts with at least one near-duplicate from another agent.
        n_skipped: posts that could not be compared (no words, or a zero/non-finite embedding);
            they count in ``n_posts`` and are never near-duplicates.
        flags: per post, whether it is a near-duplicate.
        method: ``"cosine"`` (embeddings) or ``"jaccard-3gram"`` (texts).
        threshold: the similarity threshold used (at or above = near-duplicate).
    """

    share: float
    n_posts: int
    n_near_duplicates: int
    n_skipped: int
    flags: tuple[bool, ...]
    method: str
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN becomes ``None``; flags omitted)."""
        return {"share": None if math.isnan(self.share) else self.share,
                "n_posts": self.n_posts, "n_near_duplicates": self.n_near_duplicates,
                "n_skipped": self.n_skipped, "method": self.method, "threshold": self.threshold}


def _shingles(text: str) -> frozenset[tuple[str, ...]]:
    """Word 3-grams; a post of 1-2 words is one shingle (its words); no words -> empty."""
    w = _words(text)
    return frozenset(_ngrams(w, 3)) if len(w) >= 3 else frozenset([tuple(w)] if w else [])


def near_duplicate_share(texts: Sequence[str], agents: Sequence[str],
                         embeddings: object | None = None,
                         threshold: float | None = None) -> NearDuplicates:
    """Share of posts that are near-duplicates of another agent's post.

    Two posts are near-duplicates when the cosine similarity of their embeddings is at least
    ``threshold`` (default :data:`COSINE_THRESHOLD` = 0.9), or, without embeddings, when the
    Jaccard similarity of their word-3-gram sets is at least ``threshold`` (default
    :data:`JACCARD_THRESHOLD` = 0.6; a post of one or two words is compared as one shingle).
    Posts of the same agent are never compared with each other.

    Args:
        texts: the posts, one per entry.
        agents: the agent of each post (same length).
        embeddings: optional vectors, shape ``(n_posts, dim)``.
        threshold: similarity threshold in ``(0, 1]``, or ``None`` for the default of the method.

    Returns:
        A frozen :class:`NearDuplicates`.

    Raises:
        TypeError: if ``texts`` is a single string or holds non-strings.
        ValueError: if lengths or shapes disagree, or ``threshold`` is out of range.

    Example:
        >>> near_duplicate_share(["the sky is blue", "The sky is blue!", "grass is green"],
        ...                      ["a", "b", "c"]).n_near_duplicates
        2
    """
    texts = _texts(texts, "texts")
    if isinstance(agents, (str, bytes)) or not isinstance(agents, Sequence):
        raise TypeError("agents must be a sequence with one agent per post")
    agents = [str(a) for a in agents]
    if len(agents) != len(texts):
        raise ValueError(f"agents must have one entry per post: got {len(agents)} agents for "
                         f"{len(texts)} texts")
    P = len(texts)
    if threshold is not None and (isinstance(threshold, bool)
                                  or not isinstance(threshold, (int, float))
                                  or not 0 < threshold <= 1):
        raise ValueError(f"threshold must be a number in (0, 1]; got {threshold!r}")
    flags = [False] * P
    if embeddings is not None:
        thr = COSINE_THRESHOLD if threshold is None else float(threshold)
        E = np.asarray(embeddings, dtype=np.float64)
        if E.ndim != 2 or E.shape[0] != P:
            raise ValueError(f"embeddings must have shape (n_posts={P}, dim); got {E.shape}")
        norms = np.linalg.norm(E, axis=1)
        ok = np.isfinite(E).all(axis=1) & (norms > 0)
        skipped = int(P - ok.sum())
        U = np.zeros_like(E)
        U[ok] = E[ok] / norms[ok, None]
        S = U @ U.T
        lab = np.array(agents, dtype=object)
        other = (lab[:, None] != lab[None, :]) & ok[:, None] & ok[None, :]
        hit = ((S >= thr - 1e-12) & other).any(axis=1)
        flags = [bool(h) for h in hit]
        method = "cosine"
    else:
        thr = JACCARD_THRESHOLD if threshold is None else float(threshold)
        sh = [_shingles(t) for t in texts]
        skipped = sum(1 for s in sh if not s)
        index: dict[tuple[str, ...], list[int]] = {}
        for i, s in enumerate(sh):
            for g in s:
                index.setdefault(g, []).append(i)
        for i, s in enumerate(sh):
            if not s:
                continue
            cands = {j for g in s for j in index[g] if agents[j] != agents[i]}
            for j in cands:
                inter = len(s & sh[j])
                if inter / (len(s) + len(sh[j]) - inter) >= thr - 1e-12:
                    flags[i] = True
                    break
        method = "jaccard-3gram"
    k = sum(flags)
    return NearDuplicates(share=k / P if P else math.nan, n_posts=P, n_near_duplicates=k,
                          n_skipped=skipped, flags=tuple(flags), method=method, threshold=thr)


@dataclass(frozen=True, kw_only=True)
class TextEvidence:
    """What one step's posts share: common n-grams and the near-duplicate share.

    Attributes:
        shared: the shared n-grams (:func:`shared_ngrams`).
        near_duplicates: the near-duplicate measurement (:func:`near_duplicate_share`).
        n_agents: agents with posts.
    """

    shared: tuple[SharedNgram, ...]
    near_duplicates: NearDuplicates
    n_agents: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"shared": [g.to_dict() for g in self.shared],
                "near_duplicates": self.near_duplicates.to_dict(), "n_agents": self.n_agents}


def text_evidence(texts: Sequence[str], agents: Sequence[str], embeddings: object | None = None,
                  *, n: int = 3, top: int | None = 5,
                  threshold: float | None = None) -> TextEvidence:
    """Both pieces of evidence for one step's posts (e.g. the first and the last step).

    Args:
        texts: the posts.
        agents: the agent of each post.
        embeddings: optional vectors ``(n_posts, dim)`` for the near-duplicate test.
        n: n-gram length for :func:`shared_ngrams`.
        top: shared n-grams to keep.
        threshold: near-duplicate threshold (``None``: the method's default).

    Returns:
        A frozen :class:`TextEvidence`.
    """
    texts = _texts(texts, "texts")
    if isinstance(agents, (str, bytes)) or not isinstance(agents, Sequence):
        raise TypeError("agents must be a sequence with one agent per post")
    if len(agents) != len(texts):
        raise ValueError(f"agents must have one entry per post: got {len(agents)} agents for "
                         f"{len(texts)} texts")
    by_agent: dict[str, list[str]] = {}
    for t, a in zip(texts, agents):
        by_agent.setdefault(str(a), []).append(t)
    return TextEvidence(shared=tuple(shared_ngrams(by_agent, n=n, top=top)),
                        near_duplicates=near_duplicate_share(texts, agents, embeddings, threshold),
                        n_agents=len(by_agent))
