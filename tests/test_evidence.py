"""Text evidence (issue 12): shared n-grams and near-duplicate shares against brute force."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

import llmweb_plugin as lw
from llmweb_plugin.evidence import near_duplicate_share, shared_ngrams, text_evidence

POSTS = {
    "a": ["The sky is blue today.", "I think the sky is blue and calm."],
    "b": ["Honestly, the sky is blue!", "Grass is green and the sky is blue."],
    "c": ["The sky is blue, they say.", "Nothing else matters today."],
    "d": ["Cats sleep all day.", "Dogs don't sleep all day."],
}


def _brute_shared(posts: dict[str, list[str]], n: int, need: int) -> dict[str, tuple[int, int]]:
    """n-gram -> (agents using it, total count), by the plainest possible loops."""
    out: dict[str, tuple[int, int]] = {}
    grams: dict[str, list[set[str]]] = {}
    for agent, texts in posts.items():
        for text in texts:
            words = re.findall(r"\w+(?:'\w+)*", text.lower())
            for i in range(len(words) - n + 1):
                grams.setdefault(" ".join(words[i:i + n]), []).append({agent})
    for g, uses in grams.items():
        agents = set().union(*uses)
        if len(agents) >= need:
            out[g] = (len(agents), len(uses))
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_shared_ngrams_against_brute_force(n):
    got = shared_ngrams(POSTS, n=n, top=None)
    ref = _brute_shared(POSTS, n, need=3)  # 4 agents: strict majority = 3
    assert {g.ngram: (g.n_agents, g.count) for g in got} == ref
    keys = [(-g.n_agents, -g.count) for g in got]
    assert keys == sorted(keys)
    for g in got:
        assert len(g.agents) == g.n_agents and list(g.agents) == sorted(g.agents)


def test_shared_ngrams_defaults_and_limits():
    top = shared_ngrams(POSTS)
    assert [(g.ngram, g.n_agents, g.count) for g in top] == [
        ("the sky is", 3, 5), ("sky is blue", 3, 5)]
    assert top[0].agents == ("a", "b", "c")
    two = shared_ngrams(POSTS, n=3, min_agents=2, top=None)
    assert {g.ngram for g in two} == set(_brute_shared(POSTS, 3, need=2))
    assert "sleep all day" not in {g.ngram for g in two}  # one agent (d), twice
    assert len(shared_ngrams(POSTS, n=1, min_agents=2, top=3)) == 3
    # three agents: majority 2; one agent alone never shares
    three = {k: POSTS[k] for k in "abd"}
    assert {g.ngram for g in shared_ngrams(three, top=None)} == set(_brute_shared(three, 3, 2))
    assert shared_ngrams({"a": ["the sky is blue", "the sky is blue"]}) == []
    assert shared_ngrams({}) == []
    assert json.dumps([g.to_dict() for g in top])


def test_shared_ngrams_bad_input():
    with pytest.raises(TypeError, match=r"texts_by_agent\['a'\] must be a sequence of strings"):
        shared_ngrams({"a": "the sky is blue"})
    with pytest.raises(TypeError, match="must be a mapping"):
        shared_ngrams([["x"]])
    with pytest.raises(TypeError, match=r"texts_by_agent\['a'\]\[1\] must be a str"):
        shared_ngrams({"a": ["x", 3]})
    for kw in ({"n": 0}, {"min_agents": 0}, {"top": -1}, {"n": 2.5}):
        with pytest.raises(ValueError, match=f"{next(iter(kw))} must be a positive integer"):
            shared_ngrams(POSTS, **kw)


def _jaccard_brute(texts, agents, thr=0.6):
    def sh(t):
        w = re.findall(r"\w+(?:'\w+)*", t.lower())
        return {tuple(w[i:i + 3]) for i in range(len(w) - 2)} if len(w) >= 3 else (
            {tuple(w)} if w else set())
    S = [sh(t) for t in texts]
    flags = []
    for i in range(len(texts)):
        hit = False
        for j in range(len(texts)):
            if (agents[j] != agents[i] and S[i] and S[j]
                    and len(S[i] & S[j]) / len(S[i] | S[j]) >= thr):
                hit = True
        flags.append(hit)
    return flags


TEXTS = [
    "The sky is blue and the sea is calm today.",      # a
    "the sky is blue and the sea is calm today!",      # b: same words -> duplicate of a
    "The sky is blue and the sea is very calm today.",  # c: one word added: 6/11 < 0.6
    "The sky is blue and the sea is calm today.",      # a again: same agent as 0
    "Grass grows green in the spring rain.",           # b
    "Yes",                                             # c: one word
    "yes!",                                            # a: one word, same as 5
    "",                                                # b: no words -> skipped
    "Completely different words here now",             # c
]
AGENTS = ["a", "b", "c", "a", "b", "c", "a", "b", "c"]


def test_near_duplicate_share_by_jaccard_against_brute_force():
    res = near_duplicate_share(TEXTS, AGENTS)
    ref = _jaccard_brute(TEXTS, AGENTS)
    assert list(res.flags) == ref
    assert res.flags == (True, True, False, True, False, True, True, False, False)
    assert res.n_near_duplicates == sum(ref) == 5
    assert res.share == pytest.approx(5 / 9)
    assert (res.method, res.threshold, res.n_skipped, res.n_posts) == ("jaccard-3gram", 0.6, 1, 9)
    strict = near_duplicate_share(TEXTS, AGENTS, threshold=0.95)
    assert list(strict.flags) == _jaccard_brute(TEXTS, AGENTS, 0.95)
    # same-agent repeats do not count
    assert near_duplicate_share(["same words here", "same words here"], ["a", "a"]).share == 0.0
    assert math.isnan(near_duplicate_share([], []).share)


def test_near_duplicate_share_by_cosine_against_brute_force():
    gen = np.random.default_rng(0)
    E = gen.normal(size=(8, 5))
    E[1] = 3 * E[0] + 0.01 * gen.normal(size=5)  # near-duplicate of 0, another agent
    E[3] = E[2]  # exact duplicate but the same agent
    E[5] = 0.0  # zero vector: skipped
    agents = ["a", "b", "c", "c", "a", "b", "a", "b"]
    res = near_duplicate_share(["t"] * 8, agents, embeddings=E)
    U = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-300)
    ref = [any(agents[i] != agents[j] and np.linalg.norm(E[i]) > 0 and np.linalg.norm(E[j]) > 0
               and float(U[i] @ U[j]) >= 0.9 for j in range(8)) for i in range(8)]
    assert list(res.flags) == ref
    assert res.flags[0] and res.flags[1] and not res.flags[2] and not res.flags[5]
    assert (res.method, res.threshold, res.n_skipped) == ("cosine", 0.9, 1)
    with pytest.raises(ValueError, match=r"embeddings must have shape \(n_posts=8, dim\)"):
        near_duplicate_share(["t"] * 8, agents, embeddings=E[:7])


def test_near_duplicate_bad_input():
    with pytest.raises(ValueError, match="agents must have one entry per post"):
        near_duplicate_share(["a b c"], ["x", "y"])
    with pytest.raises(TypeError, match="texts must be a sequence of strings"):
        near_duplicate_share("a b c", ["x"])
    with pytest.raises(ValueError, match="threshold must be a number in"):
        near_duplicate_share(["a"], ["x"], threshold=1.5)


def test_text_evidence_combines_both_for_one_step():
    ev = lw.text_evidence(TEXTS, AGENTS)
    assert ev.n_agents == 3
    assert ev.near_duplicates.n_near_duplicates == 5
    by_agent: dict[str, list[str]] = {}
    for t, a in zip(TEXTS, AGENTS):
        by_agent.setdefault(a, []).append(t)
    assert [g.ngram for g in ev.shared] == [g.ngram for g in shared_ngrams(by_agent, top=5)]
    assert ev.shared[0].n_agents == 3
    d = json.loads(json.dumps(ev.to_dict(), allow_nan=False))
    assert d["near_duplicates"]["share"] == pytest.approx(5 / 9)
    assert text_evidence is lw.text_evidence


def test_brute_force_helper_agrees_on_random_posts():
    """Random short posts over a tiny vocabulary: many overlaps, every pair checked."""
    gen = np.random.default_rng(1)
    vocab = ["the", "sky", "is", "blue", "sea", "calm"]
    texts = [" ".join(gen.choice(vocab, size=gen.integers(0, 7))) for _ in range(40)]
    agents = [str(gen.integers(0, 4)) for _ in range(40)]
    assert list(near_duplicate_share(texts, agents).flags) == _jaccard_brute(texts, agents)
    posts: dict[str, list[str]] = {}
    for t, a in zip(texts, agents):
        posts.setdefault(a, []).append(t)
    for n in (1, 2, 3):
        got = {g.ngram: (g.n_agents, g.count) for g in shared_ngrams(posts, n=n, top=None)}
        assert got == _brute_shared(posts, n, need=3)
