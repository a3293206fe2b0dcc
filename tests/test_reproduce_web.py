"""Reproduce targets ``lwd-fig2`` and ``mas-topology`` (issue 15): quick runs whose claims are
re-decided from their own measured numbers, the estimators on curves with known answers, the
GMM proxy with a topology against the proxy itself, and bad options."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmweb_plugin.proxies import gmm_preset
from llmweb_plugin.reproduce import lwd_fig2, mas_topology
from llmweb_plugin.reproduce._gmm_topology import adjacency, pooled_vendi, simulate_topology
from llmweb_plugin.reproduce._web_runs import bootstrap_ratio, window_mean
from llmweb_plugin.testing import SeededEmbedder


# ------------------------------------------------------------------ the proxy with a topology
def test_full_topology_reproduces_the_proxy_bit_for_bit():
    for preset in ("lwd-fig4", "lwd-fig6"):
        web = gmm_preset(preset, n_steps=25, n_replicates=3)
        ref = web.run(rng=7, engine="numpy")
        ours = simulate_topology(web, adjacency(3, "full"), rng=7)
        assert np.array_equal(ours.weights, ref.weights)
        assert np.array_equal(ours.norms, ref.norms)


def test_ring_differs_from_full_and_reads_only_neighbours():
    web = gmm_preset("lwd-fig4", n_steps=15, n_replicates=2, n_agents=5)
    ring = adjacency(5, "ring")
    assert ring.sum(axis=1).tolist() == [2] * 5 and not ring.diagonal().any()
    assert ring[0].nonzero()[0].tolist() == [1, 4]
    a = simulate_topology(web, adjacency(5, "full"), rng=1)
    b = simulate_topology(web, ring, rng=1)
    assert a.degree.tolist() == [4.0, 4.0] and b.degree.tolist() == [2.0, 2.0]
    assert np.array_equal(a.weights[0], b.weights[0])  # same start, then different reads
    assert not np.array_equal(a.weights[-1], b.weights[-1])
    # with no edges at all, nobody converges towards anybody faster than with the full web
    iso = simulate_topology(dataclass_replace(web, n_replicates=20), np.zeros((5, 5), bool),
                            rng=2)
    full = simulate_topology(dataclass_replace(web, n_replicates=20), adjacency(5, "full"),
                             rng=2)
    assert np.median(iso.norms[-1]) > np.median(full.norms[-1])


def dataclass_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


def test_pooled_vendi_against_brute_force_entropy():
    W = np.array([[[0.5, 0.5], [0.5, 0.5]], [[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]])
    out = pooled_vendi(W)
    brute = []
    for w in W:
        p = w.mean(axis=0)
        brute.append(math.exp(-sum(x * math.log(x) for x in p if x > 0)))
    assert np.allclose(out, brute) and np.allclose(out, [2.0, 2.0, 1.0])


def test_simulate_topology_refuses_a_wrong_matrix():
    web = gmm_preset("lwd-fig4", n_steps=2, n_replicates=2)
    with pytest.raises(ValueError, match=r"adj must have shape"):
        simulate_topology(web, np.ones((4, 4), bool), rng=0)


# ------------------------------------------------------------------ estimators, known answers
def test_hitting_times_on_exponential_curves():
    t = np.arange(0, 31)[:, None]
    rates = np.array([0.1, 0.2, 0.05])
    C = np.exp(-t * rates)
    got = mas_topology.hitting_times(C, 0.5)
    assert got.tolist() == [float(math.ceil(math.log(2) / r - 1e-12)) for r in rates]
    # never reached: censored at T + 1
    assert mas_topology.hitting_times(np.ones((11, 2)), 0.5).tolist() == [11.0, 11.0]


def test_late_levels_use_the_verdict_window():
    m = 40
    C = np.concatenate([np.full(30, 3.0), np.full(10, 1.0)])[:, None] * np.array([1.0, 2.0])
    assert m // 4 == 10
    assert mas_topology.late_levels(C).tolist() == [1.0, 2.0]


def test_bootstrap_and_ratio_estimators():
    rng = np.random.default_rng(0)
    a = np.full(50, 4.0)
    b = np.full(50, 2.0)
    est, ci = mas_topology.bootstrap(lambda x, y: np.median(x) / np.median(y), (a, b), rng)
    assert est == 2.0 and ci == (2.0, 2.0)
    r, rci = bootstrap_ratio(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0]), rng)
    assert r == 1.0 and rci[0] <= 1.0 <= rci[1]
    assert bootstrap_ratio(np.array([3.0]), np.array([2.0]), rng) == (1.5, (1.5, 1.5))
    M = np.array([[1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, np.nan]])
    assert window_mean(M, [1, 2, 3, 4], 3, 4).tolist() == [3.5, 2.0]
    assert np.isnan(window_mean(M, [1, 2, 3, 4], 11, 30)).all()


def test_decisions_follow_the_intervals():
    mt = {"full": 2.0, "small_world_k4": 3.0, "small_world_k2": 4.0, "ring": 5.0}
    assert mas_topology.decide_denser_faster(mt, (0.1, 0.9))[0] is True
    assert mas_topology.decide_denser_faster(mt, (-0.1, 0.9))[0] is None
    assert mas_topology.decide_denser_faster(mt, (-0.9, -0.1))[0] is False
    assert mas_topology.decide_denser_faster({**mt, "small_world_k4": 9.0}, (0.1, 0.9))[0] \
        is False
    assert mas_topology.decide_diminishing((0.1, 1.0), (0.1, 0.5))[0] is True
    assert mas_topology.decide_diminishing((-1.0, -0.1), (0.1, 0.5))[0] is False
    assert mas_topology.decide_diminishing((0.1, 1.0), (-0.5, -0.1))[0] is False
    assert mas_topology.decide_diminishing((0.1, 1.0), (-0.5, 0.1))[0] is None
    assert mas_topology.decide_rate_vs_destination((0.2, 0.4))[0] is True
    assert mas_topology.decide_rate_vs_destination((-0.4, -0.2))[0] is False
    assert mas_topology.decide_rate_vs_destination((-0.4, 0.2))[0] is None
    assert mas_topology.decide_web((-0.5, -0.3), (-0.2, 0.1))[0] is True
    assert mas_topology.decide_web((-0.1, 0.3), (-0.6, -0.2))[0] is False
    assert mas_topology.decide_web((-0.5, -0.1), (-0.2, 0.1))[0] is None
    assert lwd_fig2.decide_ratio(0.669, (0.5, 0.8), True)[0] is True
    assert lwd_fig2.decide_ratio(0.669, (0.7, 0.8), True)[0] is False
    assert lwd_fig2.decide_ratio(0.669, (0.5, 0.8), False)[0] is None
    assert [lwd_fig2.decide_trend({"verdict": v})[0] for v in
            ("collapsing", "stable", "diverging", "inconclusive")] == [True, False, False, None]
    assert [lwd_fig2.decide_verdict(v)[0] for v in
            ("collapsing", "converging", "narrowing", "stable", "inconclusive")] == \
        [True, True, None, False, None]


# ------------------------------------------------------------------ the targets at quick scale
@pytest.fixture(scope="module")
def fig2_quick():
    return lwd_fig2.run(replicates=None, quick=True, rng=np.random.default_rng(3))


def test_lwd_fig2_quick_claims_are_decided_from_its_numbers(fig2_quick, tmp_path):
    o = fig2_quick
    assert o.target == "lwd-fig2" and o.settings["quick"] is True
    assert o.settings["agents"] == "fake" and "plumbing" in o.notes[0]
    ids = [c.published.id for c in o.claims]
    assert ids == ["norm_falls", "window_ratio_11_30", "window_ratio_31_60", "verdict"]
    T = o.settings["n_steps"]
    norms = np.array(o.series["norm"]["replicates"])
    assert norms.shape == (o.settings["replicates"], T)
    for c in o.claims:
        m = c.measured
        assert "plumbing" in c.detail
        assert c.agrees is None  # fake agents never agree or disagree with the paper
        if c.published.id == "norm_falls":
            assert m["rule_says"] is lwd_fig2.decide_trend({"verdict": m["verdict"]})[0]
        elif c.published.id.startswith("window_ratio"):
            lo, hi = m["window"]
            early = window_mean(norms, range(1, T + 1), 1, 10)
            late = window_mean(norms, range(1, T + 1), lo, hi)
            assert np.allclose(early, m["early_means"], equal_nan=True)
            assert np.allclose(late, m["late_means"], equal_nan=True)
            if np.isfinite(late).any():
                assert math.isclose(m["ratio"], late.mean() / early.mean())
            assert m["complete"] == (T >= hi)
            assert m["rule_says"] is lwd_fig2.decide_ratio(m["published_ratio"],
                                                           tuple(m["interval"]),
                                                           m["complete"])[0]
        else:
            assert m["rule_says"] is lwd_fig2.decide_verdict(m["verdict"])[0]
    path = tmp_path / "fig2.png"
    o.draw(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lwd_fig2_window_ratios_on_known_curves():
    """A 40-step series with known window means: 11-30 over 1-10 is compared (complete), 31-60
    is partial (steps 31-40) and gets None."""
    from llmweb_plugin.reproduce._web_runs import WebRuns

    T = 40
    base = np.concatenate([np.full(10, 10.0), np.full(20, 6.7), np.full(10, 6.0)])
    norm = np.stack([base, base * 1.1, base * 0.9])
    runs = WebRuns(steps=tuple(range(1, T + 1)),
                   series={"norm": norm, "vendi_score": np.ones_like(norm)},
                   verdict={"verdict": "converging", "sentence": "s",
                            "trends": {"norm": {"verdict": "collapsing",
                                                "relative_change": -0.4,
                                                "relative_change_ci": [-0.5, -0.3]}}},
                   near_duplicates=((0.0, 1.0),) * 3, seconds=0.0, agents=("a", "b", "c"))
    st = {"quick": False, "agents": "local", "responses_per_step": 4, "n_steps": T,
          "replicates": 3}
    o = lwd_fig2._outcome(runs, st, np.random.default_rng(0))
    by = {c.published.id: c for c in o.claims}
    c = by["window_ratio_11_30"]
    assert math.isclose(c.measured["ratio"], 0.67) and c.measured["complete"] is True
    assert c.interval == pytest.approx((0.67, 0.67))  # every replicate has the same ratio
    assert c.agrees is False  # 8.9 / 13.3 = 0.6692 lies outside [0.67, 0.67]
    c60 = by["window_ratio_31_60"]
    assert math.isclose(c60.measured["ratio"], 0.6) and c60.agrees is None
    assert "partial: steps 31-40 of 31-60" in c60.ours
    assert by["norm_falls"].agrees is True and by["verdict"].agrees is True
    assert by["norm_falls"].interval == (-0.5, -0.3)


def test_lwd_fig2_bad_options_are_named():
    g = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"unknown options \['step'\]"):
        lwd_fig2.run(replicates=None, quick=True, rng=g, step=3)
    with pytest.raises(ValueError, match=r"agents= runs real models"):
        lwd_fig2.run(replicates=None, quick=True, rng=g, agents=["a=x:y", "b=x:y"])
    with pytest.raises(ValueError, match=r"at least two"):
        lwd_fig2.run(replicates=1, quick=False, rng=g, agents=["a=x:y"])
    with pytest.raises(ValueError, match=r"replicates, steps and responses must be >= 1"):
        lwd_fig2.run(replicates=0, quick=True, rng=g)


@pytest.fixture(scope="module")
def mas_quick():
    return mas_topology.run(replicates=10, quick=True, rng=np.random.default_rng(5), steps=12,
                            web=True, web_agents="fake", embedder=SeededEmbedder(),
                            web_steps=6)


def test_mas_topology_quick_claims_are_decided_from_its_numbers(mas_quick, tmp_path):
    o = mas_quick
    assert [c.published.id for c in o.claims] == [
        "denser_faster", "group_size_diminishing", "rate_not_destination",
        "denser_faster_agent_web"]
    by = {c.published.id: c for c in o.claims}
    m = by["denser_faster"].measured
    assert by["denser_faster"].agrees is mas_topology.decide_denser_faster(
        m["median_steps"], tuple(m["log_ratio_ci"]))[0]
    assert math.isclose(m["log_ratio"], math.log(m["median_steps"]["ring"]
                                                 / m["median_steps"]["full"]))
    # theta is 0.75 x the median initial RMS distance, and every curve starts above 0
    assert 0 < m["theta"] < max(o.series["rms_distance"]["full"]["p95"])
    m = by["group_size_diminishing"].measured
    v = m["late_vendi_median"]
    assert math.isclose(m["gain_3_5"], v["5"] - v["3"])
    assert math.isclose(m["drop"], (v["5"] - v["3"]) - (v["7"] - v["5"]))
    assert by["group_size_diminishing"].agrees is mas_topology.decide_diminishing(
        tuple(m["gain_3_5_ci"]), tuple(m["drop_ci"]))[0]
    m = by["rate_not_destination"].measured
    assert math.isclose(m["diff"], abs(math.log(m["rate_ratio"]))
                        - abs(math.log(m["level_ratio"])))
    assert by["rate_not_destination"].agrees is mas_topology.decide_rate_vs_destination(
        tuple(m["diff_ci"]))[0]
    m = by["denser_faster_agent_web"].measured
    assert by["denser_faster_agent_web"].agrees is mas_topology.decide_web(
        m["full"]["relative_change_ci"], m["ring"]["relative_change_ci"])[0]
    assert len(o.series["t"]) == 13 and set(o.series["agent_web"]) == {"full", "ring"}
    path = tmp_path / "mas.png"
    o.draw(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mas_topology_quick_skips_the_agent_web():
    o = mas_topology.run(replicates=4, quick=True, rng=np.random.default_rng(0), steps=6,
                         group_sizes=(3, 5, 7))
    web = next(c for c in o.claims if c.published.id == "denser_faster_agent_web")
    assert web.agrees is None and "skipped in quick" in web.detail
    assert "agent_web" not in o.series and o.settings["web"] is False


def test_mas_topology_bad_options_are_named():
    g = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"unknown options \['topologies'\]"):
        mas_topology.run(replicates=4, quick=True, rng=g, topologies=["x"])
    with pytest.raises(ValueError, match=r"group_sizes must include 3, 5 and 7"):
        mas_topology.run(replicates=4, quick=True, rng=g, group_sizes=(3, 4))
    with pytest.raises(ValueError, match=r"replicates >= 2"):
        mas_topology.run(replicates=1, quick=True, rng=g)


# ------------------------------------------------------------------ real local models
@pytest.mark.slow
def test_lwd_fig2_on_local_models_small():
    """A real-LLM lwd-fig2 at a small scale (the default scale takes longer than 5 minutes
    here): the claims are still decided from the run's own numbers."""
    o = lwd_fig2.run(replicates=1, quick=False, rng=np.random.default_rng(0), steps=6,
                     responses=2, max_new_tokens=16)
    assert o.settings["agents"] == "local" and len(o.settings["agent_names"]) == 3
    norms = np.array(o.series["norm"]["replicates"])
    assert norms.shape == (1, 6) and np.isfinite(norms).all() and (norms > 0).all()
    by = {c.published.id: c for c in o.claims}
    assert by["norm_falls"].agrees is lwd_fig2.decide_trend(
        {"verdict": by["norm_falls"].measured["verdict"]})[0]
    assert by["window_ratio_11_30"].agrees is None  # T = 6 covers no step of 11-30
