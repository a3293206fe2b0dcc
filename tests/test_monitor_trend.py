"""CollapseMonitor.trend() / verdict() (issue 12): a verdict over the run so far, from the
monitor's own history, next to the one-step alarm.

Runs are built so that the answer is known: agents whose texts converge to one shared sentence
(collapse), agents who all post the same *diverse* set of texts (convergence without diversity
loss), and agents who keep writing their own texts (no collapse). The embedder is a deterministic
fake (a Gaussian vector seeded by SHA-256 of the text: equal texts, equal vectors); the store is
real embedded Qdrant.
"""

from __future__ import annotations

import pytest

import llmweb_plugin as lw
from llmweb_plugin.testing import SeededEmbedder

AGENTS = ("a", "b", "c")
L = 4  # texts per agent per step
SHARED = "the one sentence every agent ends up writing"




@pytest.fixture()
def store():
    st = lw.WebStore(":memory:", embedder=SeededEmbedder())
    yield st
    st.close()


def _own(agent: str, step: int, i: int, salt: str = "") -> str:
    return f"{salt}agent {agent} writes its own text {i} at step {step}"


def _run(store, run_id, texts_of, n_steps=24, **kw):
    """Record ``texts_of(agent, step)`` for every agent and step; returns the open monitor."""
    mon = lw.CollapseMonitor(store, run_id=run_id, **kw)
    for s in range(n_steps):
        for a in AGENTS:
            mon.record_many(texts_of(a, s), agent=a, step=s)
    mon.flush()
    return mon


def _converging(a: str, s: int) -> list[str]:
    """Step s: min(L, s // 3) of an agent's L texts are the shared sentence, the rest its own."""
    k = min(L, s // 3)
    return [SHARED] * k + [_own(a, s, i) for i in range(k, L)]


def test_texts_converging_to_one_sentence_are_collapsing(store):
    mon = _run(store, "collapse", _converging)
    hist = mon.history()
    norms = [h.norm for h in hist]
    assert norms[0] > 0.3 and norms[-1] == pytest.approx(0.0, abs=1e-5)  # all texts equal
    tr = mon.trend()
    assert tr.verdict == "collapsing", tr.sentence()
    assert tr.n_steps == 24 and tr.relative_change < -0.9 and tr.relative_change_ci[1] < 0
    # the same numbers as the function on the history (brute force: the values by hand)
    ref = lw.collapse_trend(norms, steps=[h.step for h in hist])
    assert (tr.slope, tr.ci, tr.p_value, tr.window_p_value, tr.verdict) == (
        ref.slope, ref.ci, ref.p_value, ref.window_p_value, ref.verdict)
    v = mon.verdict()
    assert (v.verdict, v.convergence, v.diversity) == ("collapsing", "fell", "fell"), v.sentence
    assert list(v.trends) == ["norm", "between_spread", "mean_cosine_distance"]
    assert v.trends["mean_cosine_distance"].verdict == "collapsing"
    assert mon.trend("mean_cosine_distance").verdict == "collapsing"
    mon.close()


def test_agents_sharing_a_diverse_source_are_converging_not_collapsing(store):
    """Each step holds the same multiset of records (four texts, three copies each), so the web's
    diversity holds; until step 8 the agents hold different copies, from then on each agent posts
    all four texts: the agents' means meet (||D|| falls to 0) without any loss of diversity."""
    split = {"a": [0, 0, 0, 1], "b": [1, 1, 2, 2], "c": [2, 3, 3, 3]}

    def shared_diverse(a: str, s: int) -> list[str]:
        picks = split[a] if s < 8 else [0, 1, 2, 3]
        return [f"source text {i} at step {s}" for i in picks]

    mon = _run(store, "inject", shared_diverse)
    assert mon.trend().verdict == "collapsing"  # ||D|| alone falls
    assert mon.history()[-1].norm == pytest.approx(0.0, abs=1e-5)
    v = mon.verdict()
    assert (v.verdict, v.convergence) == ("converging", "fell"), v.sentence
    assert v.diversity in ("held", "unclear"), v.sentence
    assert "convergence" in v.sentence and "collapsing" not in v.sentence
    mon.close()


@pytest.mark.parametrize("salt", ["", "x", "second run "])
def test_agents_keeping_their_own_texts_are_never_collapsing(store, salt):
    mon = _run(store, f"stable{salt}", lambda a, s: [_own(a, s, i, salt) for i in range(L)])
    tr = mon.trend()
    assert tr.verdict in ("stable", "inconclusive"), tr.sentence()
    assert tr.n_steps == 24 and tr.n_dropped == 0
    assert mon.verdict().verdict in ("stable", "inconclusive")
    for m in ("between_spread", "mean_cosine_distance"):
        assert mon.trend(m).verdict in ("stable", "inconclusive"), m
    mon.close()


def test_alarm_fires_on_one_step_the_verdict_does_not(store):
    """One step where every agent writes the same sentence: the online alarm fires at that step
    (norm 0 < 0.5 x baseline); the test over the whole run does not call it collapse."""

    def one_dip(a: str, s: int) -> list[str]:
        return [SHARED] * L if s == 12 else [_own(a, s, i) for i in range(L)]

    mon = _run(store, "dip", one_dip)
    assert [ev.step for ev in mon.alarms] == [12]
    tr = mon.trend()
    assert tr.verdict in ("stable", "inconclusive"), tr.sentence()
    mon.close()


def test_trend_after_every_step_matches_the_function_on_the_history_so_far(store):
    mon = lw.CollapseMonitor(store, run_id="online")
    seen = []
    for s in range(20):
        for a in AGENTS:
            mon.record_many(_converging(a, s), agent=a, step=s)
        tr = mon.trend()
        hist = mon.history()
        assert tr.n_steps == len(hist) == s + 1
        ref = lw.collapse_trend([h.norm for h in hist], steps=[h.step for h in hist])
        assert (tr.verdict, tr.slope, tr.p_value) == (ref.verdict, ref.slope, ref.p_value)
        seen.append(tr.verdict)
    assert seen[:5] == ["inconclusive"] * 5  # fewer than 6 steps
    assert seen[-1] == "collapsing"
    mon.close()


def test_another_run_is_rebuilt_from_the_store(store):
    first = _run(store, "first", _converging)
    mine = first.trend()
    first.close()
    other = lw.CollapseMonitor(store, run_id="second")
    other.record("something", agent="a", step=0)
    tr = other.trend(run_id="first")
    assert tr.n_steps == 24 and tr.verdict == mine.verdict == "collapsing"
    assert tr.slope == pytest.approx(mine.slope, rel=1e-5)
    assert tr.early_mean == pytest.approx(mine.early_mean, rel=1e-5)
    assert other.verdict(run_id="first").verdict == "collapsing"
    with pytest.raises(ValueError, match=r"run_id 'nope' has no response records.*'first'"):
        other.trend(run_id="nope")
    assert other.stats.stored == 1 and other.stats.failed == 0  # nothing else lost
    other.close()


def test_unknown_metric_names_the_valid_ones_and_loses_nothing(store):
    mon = _run(store, "bad-metric", _converging, n_steps=8)
    mon.annotate(3, vendi_score=2.5, label="not a number")
    before = mon.stats
    with pytest.raises(ValueError) as err:
        mon.trend("vendi")
    msg = str(err.value)
    assert "unknown metric 'vendi'" in msg
    for name in ("norm", "between_spread", "mean_cosine_distance", "vendi_score", "web_size"):
        assert name in msg
    assert "label" not in msg.split("valid names:")[1]
    with pytest.raises(TypeError, match="metric must be a str"):
        mon.trend(3)
    assert mon.stats == before and len(mon.history()) == 8
    # an annotated extra is a valid metric: present at one step only -> inconclusive, counted
    tr = mon.trend("vendi_score")
    assert tr.verdict == "inconclusive" and tr.n_steps == 1 and tr.n_dropped == 7
    with pytest.raises(ValueError, match="alpha must be"):
        mon.trend(alpha=0.9)
    mon.close()


def test_empty_and_one_agent_runs_give_inconclusive_not_an_exception(store):
    mon = lw.CollapseMonitor(store, run_id="empty")
    tr = mon.trend()
    assert tr.verdict == "inconclusive" and tr.n_steps == 0 and tr.reason == "no finite values"
    assert mon.verdict().verdict == "inconclusive"
    for s in range(8):  # one agent: ||D|| undefined at every step, dropped and counted
        mon.record(f"only me at step {s}", agent="solo", step=s)
    tr = mon.trend()
    assert tr.verdict == "inconclusive" and tr.n_dropped == 8 and tr.n_steps == 0
    mon.close()
