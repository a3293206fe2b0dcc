"""Mitigation experiments: the GMM proxy's arms, effect sizes, the web experiment, the CLI."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

import llmweb_plugin as lw
from llmweb_plugin.experiments import (
    DEMO_EXTERNAL_POSTS,
    GMMArm,
    default_web_arms,
    effect_size,
    run_gmm_experiment,
    run_web_experiment,
    simulate_gmm_arm,
)
from llmweb_plugin.proxies import GMMInjection, InteractingGMMWeb
from llmweb_plugin.web import EchoAgent
from llmweb_plugin.web.mitigations import ExternalInjection

FIG4 = InteractingGMMWeb()  # n=3, B=2 at +-5, beta 0.5, L=3
FIG6 = dataclasses.replace(FIG4, means=tuple((float(x),) for x in range(-5, 6)))


# ---------------------------------------------------------------------------- the GMM arms
def test_zero_rates_reproduce_the_plain_simulator_seed_by_seed():
    web = dataclasses.replace(FIG4, n_steps=25)
    run = simulate_gmm_arm(web, GMMArm(), [0, 1, 5])
    for row, seed in enumerate([0, 1, 5]):
        ref = web.run(rng=seed)
        np.testing.assert_allclose(run.norms[row], ref.norms[:, 0], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(run.final_weights[row], ref.final_weights[0], atol=1e-12)
    np.testing.assert_array_equal(run.a_sizes, ref.a_sizes)
    assert run.n_external.sum() == run.n_human.sum() == 0


def test_single_component_arm_runs_like_the_simulator():
    # B = 1: the update is the identity (and 1 - Bc = 0 at k = 1); it used to divide by zero.
    web = InteractingGMMWeb(n_agents=1, means=[[0.0]], samples_per_step=2, n_steps=3)
    run = simulate_gmm_arm(web, GMMArm(human_rate=0.5), [0, 1])
    np.testing.assert_array_equal(run.final_weights, 1.0)
    np.testing.assert_array_equal(run.norms, 0.0)


def test_injection_arm_is_the_simulators_own_injection():
    web = dataclasses.replace(FIG6, n_agents=4, n_steps=20)
    arm = GMMArm(injection=7, injection_weights=np.eye(11)[3])
    run = simulate_gmm_arm(web, arm, [3])
    ref = dataclasses.replace(web, injection=GMMInjection(weights=np.eye(11)[3],
                                                          n_points=7)).run(rng=3)
    np.testing.assert_allclose(run.norms[0], ref.norms[:, 0], rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(run.n_external, ref.n_external)
    np.testing.assert_allclose(run.synthetic_fraction, ref.synthetic_fraction, rtol=0, atol=0)


def test_synthetic_fraction_accounting_is_exact():
    web = dataclasses.replace(FIG4, n_steps=12)
    t = np.arange(13)
    inj = simulate_gmm_arm(web, GMMArm(injection=5), [0])
    np.testing.assert_array_equal(inj.n_external, 5 * t)
    np.testing.assert_array_equal(inj.a_sizes, 9 + 9 * t + 5 * t)
    np.testing.assert_array_equal(inj.synthetic_fraction, 9 * t / (9 + 14 * t))
    hum = simulate_gmm_arm(web, GMMArm(human_rate=1 / 3), [0])
    np.testing.assert_array_equal(hum.n_human, [math.floor(9 * k / 3) for k in t])
    np.testing.assert_array_equal(hum.n_synthetic, 9 * t - 3 * t)
    np.testing.assert_array_equal(hum.synthetic_fraction, 6 * t / (9 + 9 * t))
    both = simulate_gmm_arm(web, GMMArm(injection=9, human_rate=0.5), [0])
    np.testing.assert_array_equal(both.n_human, [math.floor(4.5 * k) for k in t])
    assert both.synthetic_fraction[-1] == (108 - 54) / (9 + 108 + 108)


def test_analogue_arms_are_reproducible_and_change_the_run():
    web = dataclasses.replace(FIG4, n_steps=10)
    for arm in (GMMArm(variation=0.5), GMMArm(human_rate=0.5)):
        a = simulate_gmm_arm(web, arm, [2, 4])
        b = simulate_gmm_arm(web, arm, [2, 4])
        np.testing.assert_array_equal(a.norms, b.norms)
        plain = simulate_gmm_arm(web, GMMArm(), [2, 4])
        np.testing.assert_array_equal(a.norms[:, 0], plain.norms[:, 0])  # same start
        assert not np.allclose(a.norms[:, -1], plain.norms[:, -1])


def test_zero_injection_reproduces_the_collapse():
    res = run_gmm_experiment({"none": GMMArm()}, web=dataclasses.replace(FIG4, n_steps=60),
                             seeds=range(8), window=6)
    norms = res.norms["none"]
    assert np.all(norms[:, -6:].mean(axis=1) < 0.4 * norms[:, 0])
    assert norms[:, -6:].mean() < 0.1 * norms[:, 0].mean()


def test_high_injection_keeps_the_norm_higher_on_overlapping_components():
    """Fig. 6 setting (11 overlapping components): 36 external points per step (80% of new
    data) keep ||D|| above the plain run's at the last steps, across seeds (measured)."""
    res = run_gmm_experiment({"none": GMMArm(), "inject": GMMArm(injection=36)},
                             web=dataclasses.replace(FIG6, n_steps=100), seeds=range(10),
                             window=10)
    e = res.effects["inject"]
    assert e.ci_low > 0 and e.diff > 0.05
    assert np.all(res.norms["inject"][:, -10:].mean(axis=1) > 0.2)
    assert res.secondary_effects["inject"].ci_low > 0  # and the mixtures stay more diverse


def test_injection_speeds_up_consensus_on_separated_components():
    """Fig. 4 setting (two components 10 s.d. apart): the same injection makes the agents agree
    sooner: ||D|| is lower, not higher (measured, reported as such)."""
    res = run_gmm_experiment({"none": GMMArm(), "inject": GMMArm(injection=36)},
                             web=dataclasses.replace(FIG4, n_steps=40), seeds=range(10),
                             window=10)
    e = res.effects["inject"]
    assert e.ci_high < 0 and e.verdict == "lower"
    assert res.secondary_effects["inject"].ci_low > 0  # the consensus itself is more diverse


def test_bad_arms_and_settings_raise():
    web = dataclasses.replace(FIG4, n_steps=3)
    with pytest.raises(ValueError, match="non-empty mapping"):
        run_gmm_experiment({}, web=web)
    with pytest.raises(ValueError, match="baseline 'x'"):
        run_gmm_experiment({"a": GMMArm()}, web=web, baseline="x")
    with pytest.raises(ValueError, match="distinct"):
        run_gmm_experiment({"a": GMMArm()}, web=web, seeds=[1, 1])
    with pytest.raises(ValueError, match="variation"):
        simulate_gmm_arm(web, GMMArm(variation=1.5), [0])
    with pytest.raises(ValueError, match="human_rate"):
        simulate_gmm_arm(web, GMMArm(human_rate=-0.1), [0])
    with pytest.raises(ValueError, match="injection must be"):
        simulate_gmm_arm(web, GMMArm(injection=-2), [0])
    with pytest.raises(ValueError, match="injection_weights"):
        simulate_gmm_arm(web, GMMArm(injection=1, injection_weights=[1.0]), [0])
    with pytest.raises(ValueError, match="in the arm"):
        simulate_gmm_arm(dataclasses.replace(web, injection=GMMInjection(weights=[.5, .5])),
                         GMMArm(), [0])
    with pytest.raises(ValueError, match="initial_points"):
        simulate_gmm_arm(dataclasses.replace(web, initial_points=[[0.0]] * 5), GMMArm(), [0])
    with pytest.raises(ValueError, match="beta"):
        simulate_gmm_arm(dataclasses.replace(web, beta=2.0), GMMArm(), [0])
    res = run_gmm_experiment({"a": {"injection": 2}, "b": {}}, web=web, seeds=[0, 1])
    assert res.arms == ("a", "b") and res.baseline == "a"


def test_bad_window_raises_before_any_run(store):
    with pytest.raises(ValueError, match="window"):
        run_gmm_experiment({"a": GMMArm()}, web=dataclasses.replace(FIG4, n_steps=3), window=0)
    with pytest.raises(ValueError, match="window"):
        run_web_experiment(echo_agents, {"none": []}, store=store, seeds=[0], n_steps=2,
                           responses_per_step=2, web_seeds=SEEDS, window=0)
    assert not list(store.runs())


# ---------------------------------------------------------------------------- effect sizes
def test_effect_size_matches_a_direct_computation():
    x = np.array([0.50, 0.62, 0.41, 0.58, 0.55])
    y = np.array([0.40, 0.47, 0.44, 0.39, 0.45])
    e = effect_size(x, y, n_boot=4000, rng=1)
    assert e.diff == pytest.approx(float(np.mean(x - y)))
    pooled = math.sqrt((np.var(x, ddof=1) + np.var(y, ddof=1)) / 2)
    assert e.cohens_d == pytest.approx((x.mean() - y.mean()) / pooled)
    assert e.relative == pytest.approx((x.mean() - y.mean()) / y.mean())
    boot = (x - y)[np.random.default_rng(1).integers(0, 5, size=(4000, 5))].mean(axis=1)
    assert (e.ci_low, e.ci_high) == tuple(np.percentile(boot, [2.5, 97.5]))
    assert effect_size(x, y, rng=1) == effect_size(x, y, rng=1)
    same = effect_size(y, y)
    assert (same.diff, same.cohens_d, same.verdict) == (0.0, 0.0, "no clear effect")
    nan = effect_size([np.nan, 1.0], [1.0, np.nan])
    assert nan.n_seeds == 0 and nan.cohens_d is None
    with pytest.raises(ValueError, match="one length"):
        effect_size([1.0, 2.0], [1.0])


def test_result_outputs_are_valid_json_markdown_and_a_plot(tmp_path):
    web = dataclasses.replace(FIG4, n_steps=8)
    res = run_gmm_experiment({"none": GMMArm(), "injection": GMMArm(injection=9),
                              "human": GMMArm(human_rate=0.5)}, web=web, seeds=range(3),
                             window=3)
    paths = res.save(tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert data["arms"] == ["none", "injection", "human"] and data["steps"] == list(range(9))
    assert np.array(data["norms"]["human"]).shape == (3, 9)
    assert data["effects"]["injection"]["window"] == [6, 8]
    assert data["effects"]["injection"]["diff"] == pytest.approx(res.effects["injection"].diff)
    md = paths["markdown"].read_text()
    assert "| `injection` |" in md and "analogue" in md and "Cohen's d" in md
    assert paths["plot"].stat().st_size > 10_000
    mean, _, hi = res.band("none")
    np.testing.assert_allclose(mean, res.norms["none"].mean(axis=0))
    np.testing.assert_allclose(hi - mean, res.norms["none"].std(axis=0, ddof=1))


# ---------------------------------------------------------------------------- the LLM web
SEEDS = [f"Seed post {i}: Bitcoin, markets and the future, take {i}." for i in range(8)]


def echo_agents(seed: int) -> dict[str, EchoAgent]:
    return {f"a{i}": EchoAgent(f"a{i}", seed=seed) for i in range(3)}


def test_web_experiment_runs_every_arm_and_seed_into_one_store(store):
    arms = {"none": [], "injection": lambda seed: [ExternalInjection(DEMO_EXTERNAL_POSTS,
                                                                     per_step=3)]}
    res = run_web_experiment(echo_agents, arms, store=store, seeds=[0, 1], n_steps=3,
                             responses_per_step=2, web_seeds=SEEDS, window=2)
    assert res.run_ids == {"none": ("exp-none-s0", "exp-none-s1"),
                           "injection": ("exp-injection-s0", "exp-injection-s1")}
    assert set(store.runs()) == {r for ids in res.run_ids.values() for r in ids}
    for si, rid in enumerate(res.run_ids["injection"]):
        assert store.count(rid, kind="external") == 9
        np.testing.assert_array_equal(res.series["injected"]["injection"][si], [3, 3, 3])
        for j, t in enumerate(res.steps):
            web = store.web(rid, before_step=t + 1)
            assert res.series["synthetic_fraction"]["injection"][si, j] == \
                sum(r.kind == "post" for r in web) / len(web)
    # the norms are the stored responses' ||D(t)||_F, recomputed here from Qdrant
    recs = store.records("exp-none-s1", kind="response", with_vectors=True)
    for j, t in enumerate(res.steps):
        at = [r for r in recs if r.step == t]
        means = np.stack([np.mean([r.vector for r in at if r.agent == a], axis=0)
                          for a in sorted({r.agent for r in at})])
        assert res.norms["none"][1, j] == pytest.approx(lw.collapse_norm(means), rel=1e-4)
    assert res.effects["injection"].n_seeds == 2
    with pytest.raises(ValueError, match="already holds run"):
        run_web_experiment(echo_agents, arms, store=store, seeds=[0], n_steps=1,
                           responses_per_step=2, web_seeds=SEEDS)
    again = run_web_experiment(echo_agents, {"none": []}, store=store, seeds=[0], n_steps=3,
                               responses_per_step=2, web_seeds=SEEDS, overwrite=True)
    # the same texts again (embedding batches may differ in float32 rounding)
    np.testing.assert_allclose(again.norms["none"][0], res.norms["none"][0], rtol=1e-5)


def test_default_web_arms_run_with_fake_agents(store, tmp_path):
    arms, notes = default_web_arms(3, review_dir=tmp_path)
    assert set(arms) == set(notes) == {"none", "injection", "variation", "human"}
    res = run_web_experiment(echo_agents, arms, store=store, seeds=[0], n_steps=2,
                             responses_per_step=2, web_seeds=SEEDS, arm_notes=notes)
    assert store.count("exp-human-s0", kind="human") == 3  # floor(0.5 * 6) posts reviewed
    assert res.series["sampled"]["human"][0].sum() == 3
    meta = store.records("exp-variation-s0", kind="response")[0].metadata
    assert meta["persona"] and meta["query_template"] and meta["temperature"] in (0.6, 0.9, 1.2)
    assert "PromptVariation" in res.to_markdown()


# ---------------------------------------------------------------------------- the CLI
def test_cli_gmm_and_fake_web(tmp_path, capsys, embedder):
    from llmweb_plugin.cli import main

    out = tmp_path / "gmm"
    assert main(["experiment", "--proxy", "gmm", "--replicates", "3", "--steps", "10", "--out",
                 str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"experiment.json", "experiment.md",
                                               "experiment.png"}
    printed = capsys.readouterr().out
    assert "| `injection` |" in printed and "| `human` |" in printed
    web_out = tmp_path / "web"
    assert main(["experiment", "--proxy", "web", "--fake", "--replicates", "1", "--steps", "2",
                 "--n-agents", "2", "--responses", "2", "--arms", "none,injection",
                 "--no-report", "--out", str(web_out)]) == 0
    data = json.loads((web_out / "experiment.json").read_text())
    assert data["run_ids"] == {"none": ["exp-none-s0"], "injection": ["exp-injection-s0"]}
    assert data["series"]["injected"]["injection"] == [[2.0, 2.0]]
    assert main(["experiment", "--arms", "none,bogus", "--out", str(tmp_path / "x")]) == 2
    assert "--arms must be some of" in capsys.readouterr().err


# ---------------------------------------------------------------------------- bad inputs
def test_gmm_arm_with_a_non_number_rate_raises_type_error():
    web = dataclasses.replace(FIG4, n_steps=3)
    with pytest.raises(TypeError, match=r"variation must be a number in \[0, 1\]; got 'x'"):
        simulate_gmm_arm(web, GMMArm(variation="x"), [0])
    with pytest.raises(TypeError, match=r"variation must be a number in \[0, 1\]; got 'x'"):
        run_gmm_experiment({"a": GMMArm(variation="x")}, web=web, seeds=[0])


@pytest.mark.parametrize("kwarg", ["mitigations", "rng", "monitor", "run_id", "agents"])
def test_web_experiment_rejects_reserved_run_web_kwargs_before_any_run(store, kwarg):
    with pytest.raises(ValueError, match=rf"run_web_experiment sets \['{kwarg}'\] itself"):
        run_web_experiment(echo_agents, {"none": []}, store=store, seeds=[0], n_steps=2,
                           responses_per_step=2, web_seeds=SEEDS, **{kwarg: None})
    assert not list(store.runs())


def test_web_experiment_reserved_kwargs_are_all_named(store):
    with pytest.raises(ValueError, match=r"sets \['mitigations', 'rng'\] itself"):
        run_web_experiment(echo_agents, {"none": []}, store=store, seeds=[0], n_steps=2,
                           responses_per_step=2, web_seeds=SEEDS, rng=1, mitigations=[])
    assert not list(store.runs())


def test_web_experiment_zero_steps_raises_before_any_run(store):
    with pytest.raises(ValueError, match="n_steps must be >= 1; got 0"):
        run_web_experiment(echo_agents, {"none": []}, store=store, seeds=[0], n_steps=0,
                           responses_per_step=2, web_seeds=SEEDS)
    assert not list(store.runs())


@pytest.mark.parametrize(("argv", "message"), [
    (["--proxy", "gmm", "--replicates", "0"], "--replicates must be >= 1; got 0"),
    (["--proxy", "gmm", "--steps", "0"], "--steps must be >= 1; got 0"),
    (["--proxy", "web", "--fake", "--n-agents", "1"],
     "--n-agents must be >= 2 (the collapse metric compares agents); got 1"),
    (["--proxy", "web", "--fake", "--responses", "0"], "--responses must be >= 1; got 0"),
    (["--proxy", "web", "--fake", "--external", "/no/such/file"],
     "--external '/no/such/file' is not a file"),
])
def test_cli_experiment_bad_input_exits_2_with_one_line_error(tmp_path, capsys, argv, message):
    from llmweb_plugin.cli import main

    out = tmp_path / "out"
    assert main(["experiment", *argv, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == f"llmweb experiment: error: {message}"
    assert "Traceback" not in captured.err and captured.out == ""
    assert not out.exists()  # rejected before anything is written
