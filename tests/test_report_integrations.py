"""Reports on runs recorded through the LangChain callback handler and through the agent web."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest

import llmweb_plugin as lw
from llmweb_plugin.report import DiversityReport

pytest.importorskip("langchain_core")
llmweb_langchain = pytest.importorskip("llmweb_langchain")
llmweb_langgraph = pytest.importorskip("llmweb_langgraph")

from langchain_core.language_models import BaseChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult

ANSWERS = {
    "bull": ["Bitcoin will hit new highs.", "Adoption keeps growing.", "Buy the dip."],
    "bear": ["Regulators will crush crypto.", "It is a bubble.", "Expect a crash."],
}


class MultiGen(BaseChatModel):
    """Returns ``n`` generations per call, one usage block for the whole call."""

    answers: list[str]

    @property
    def _llm_type(self) -> str:
        return "multi-gen-fake"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[override]
        usage = {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18}
        gens = [ChatGeneration(message=AIMessage(content=a, usage_metadata=usage if i == 0
                                                 else None))
                for i, a in enumerate(self.answers)]
        return ChatResult(generations=gens)


def per_step_from_vectors(store: lw.WebStore, run_id: str) -> dict[int, float]:
    by_step: dict[int, list[lw.Record]] = defaultdict(list)
    for r in store.records(run_id, kind="response", with_vectors=True):
        by_step[r.step].append(r)
    out = {}
    for s, rs in by_step.items():
        m = lw.step_metrics(s, np.stack([r.vector for r in rs]), [r.agent for r in rs])
        out[s] = m.norm
    return out


def test_report_on_a_run_recorded_by_the_langchain_callback(store) -> None:
    mon = lw.CollapseMonitor(store, run_id="lc-run")
    handler = llmweb_langchain.CollapseCallbackHandler(mon)
    for step in (1, 2, 3):
        for agent, answers in ANSWERS.items():
            texts = answers if step < 3 else ["Bitcoin's future is uncertain."] * 3
            model = GenericFakeChatModel(messages=iter(
                [AIMessage(content=t, usage_metadata={"input_tokens": 5, "output_tokens": 3,
                                                      "total_tokens": 8}) for t in texts]))
            for _ in texts:
                model.invoke("Bitcoin?", config={
                    "callbacks": [handler],
                    "metadata": {"llmweb_agent": agent, "llmweb_step": step}})
        # one call with 3 generations: its usage must count once
        MultiGen(answers=["x one", "x two", "x three"]).invoke(
            "Bitcoin?", config={"callbacks": [handler],
                                "metadata": {"llmweb_agent": "multi", "llmweb_step": step}})
    mon.flush()
    live = DiversityReport.from_monitor(mon).to_json()["runs"][0]
    stored = DiversityReport.from_store(store, run_id="lc-run").to_json()["runs"][0]
    mon.close()
    assert live["agents"] == stored["agents"] == ["bear", "bull", "multi"]
    assert stored["counts"]["response"] == 3 * 9
    ref = per_step_from_vectors(store, "lc-run")
    assert [s["norm"] for s in stored["per_step"]] == [pytest.approx(ref[s], rel=1e-12)
                                                       for s in (1, 2, 3)]
    assert [s["norm"] for s in live["per_step"]] == [s["norm"] for s in stored["per_step"]]
    expected_usage = {"bear": {"input_tokens": 45, "output_tokens": 27, "total_tokens": 72},
                      "bull": {"input_tokens": 45, "output_tokens": 27, "total_tokens": 72},
                      "multi": {"input_tokens": 33, "output_tokens": 21, "total_tokens": 54}}
    assert live["usage"] == expected_usage  # the monitor's record_usage
    assert stored["usage"] == expected_usage  # read back from the records, once per call
    assert stored["per_step"][2]["per_agent"]["bull"]["mean_cosine_distance"] == pytest.approx(
        0.0, abs=1e-6)
    ex = {(e["agent"], e["text"]) for e in stored["examples"]["first"]}
    assert ("bull", "Bitcoin will hit new highs.") in ex


def test_report_on_a_run_of_the_agent_web(store) -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    from llmweb_plugin.web import EchoAgent
    from llmweb_plugin.web.mitigations import ExternalInjection

    fresh = [f"External analyst note number {i} on bitcoin." for i in range(20)]
    graph = llmweb_langgraph.create_web_graph(
        {"a": EchoAgent("a"), "b": EchoAgent("b"), "c": EchoAgent("c")}, store=store,
        responses_per_step=3, n_steps=4, rng=7,
        mitigations=[ExternalInjection(fresh, per_step=2)],
    ).compile(checkpointer=InMemorySaver())
    out = graph.invoke({}, {"configurable": {"thread_id": "report-web"}})
    run_id = out["run_id"]
    rep = DiversityReport.from_store(store, run_id=run_id, settings={"beta": 0.5})
    data = json.loads(json.dumps(rep.to_json(), allow_nan=False))
    run = data["runs"][0]
    assert run["agents"] == ["a", "b", "c"]
    assert run["counts"] == {"seed": 20, "external": 8, "human": 0, "post": 12, "response": 36}
    hist = {h["step"]: h for h in out["history"]}
    assert [s["step"] for s in run["per_step"]] == sorted(hist) == [1, 2, 3, 4]
    for row in run["per_step"]:
        h = hist[row["step"]]
        assert row["norm"] == pytest.approx(h["norm"], rel=1e-9)
        assert row["mean_cosine_distance"] == pytest.approx(h["mean_cosine_distance"], rel=1e-9)
        # k_t = floor(beta |A(t)|): 20 seeds, +3 posts and +2 external per step
        assert row["context_size"] == (20 + 5 * (row["step"] - 1)) // 2
    assert run["mitigations"]["records_by_step"] == {str(t): {"external": 2} for t in (1, 2, 3, 4)}
    assert run["mitigations"]["tags"] == {"external:external_injection": 8}
    assert [s["web_size"] for s in run["per_step"]] == [25, 30, 35, 40]
    assert run["settings"]["inferred"]["n_seeds"] == 20
    assert run["settings"]["inferred"]["responses_per_agent_per_step"] == 3
