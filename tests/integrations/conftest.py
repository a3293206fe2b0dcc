"""Fixtures for the framework adapters: a monitor over the fresh store of ``tests/conftest.py``."""

from __future__ import annotations

import pytest

import llmweb_plugin as lw


@pytest.fixture()
def monitor(store):
    """A ``CollapseMonitor`` (run ``"test"``) over a fresh in-memory store; closed afterwards."""
    mon = lw.CollapseMonitor(store, run_id="test")
    yield mon
    mon.close()


def _check_history(mon: lw.CollapseMonitor) -> list[lw.StepMetrics]:
    """Recompute every step's metrics from the vectors in Qdrant, by brute force, and compare."""
    import numpy as np

    from llmweb_plugin.testing import brute_force_collapse_norm

    hist = mon.history()
    recs = mon.store.records(mon.run_id, kind="response", with_vectors=True)
    steps = sorted({r.step for r in recs})
    assert [h.step for h in hist] == steps
    for h in hist:
        at = [r for r in recs if r.step == h.step]
        agents = sorted({r.agent for r in at})
        assert h.n_records == len(at)
        assert h.n_agents == len(agents)
        assert dict(h.per_agent_counts) == {a: sum(r.agent == a for r in at) for a in agents}
        if len(agents) < 2:
            assert np.isnan(h.norm)
            continue
        means = np.stack([np.mean([r.vector for r in at if r.agent == a], axis=0)
                          for a in agents]).astype(np.float64)
        assert h.norm == pytest.approx(brute_force_collapse_norm(means), rel=1e-4, abs=1e-6)
    return hist


@pytest.fixture()
def check_history():
    """``check_history(mon)``: the monitor's metric history equals a brute-force recomputation."""
    return _check_history
