"""The monitor's attribution check: warn once per run about a step written by one agent only.

A step whose metric records come from a single agent has no ``||D||`` (NaN); the first such
complete step of a run usually means attribution collapsed (several agents recorded under one
name). Called by :class:`~llmweb_plugin.monitor.CollapseMonitor` with its lock held.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .monitor import CollapseMonitor

# the monitor's own log, which users filter on (the check is part of the monitor)
logger = logging.getLogger("llmweb_plugin.monitor")


def warn_single_agent(mon: CollapseMonitor, *, final: bool) -> None:
    """Warn once per run about the first complete step whose metric records have one agent."""
    if mon._warned_single_agent:
        return
    for s in sorted(mon._step_agents):
        if not (final or s < mon._max_step):
            break
        agents = mon._step_agents[s]
        if len(agents) != 1:
            continue
        mon._warned_single_agent = True
        (only,) = agents
        others = sorted(set().union(*mon._step_agents.values()) - agents)
        drift = (f" The run's other agents ({', '.join(map(repr, others[:5]))}) wrote at "
                 "other steps: give one iteration's outputs the same step (metadata "
                 "llmweb_step=...)." if others else "")
        logger.warning(
            "llmweb: step %d of run %r has records from one agent only (%r), so ||D|| is "
            "undefined (NaN). If several agents answered, they were not told apart: set "
            "metadata llmweb_agent=<name> in each agent's run config, or check attribution "
            "(see README: Attribution).%s This is warned once per run.",
            s, mon.run_id, only, drift)
        mon.events.append({"kind": "single_agent_step", "run_id": mon.run_id, "step": s,
                           "agent": only})
        return
