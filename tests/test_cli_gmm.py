"""Tests for llmweb_plugin.cli.gmm through an argparse parser built here."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json

import numpy as np
import pytest

from llmweb_plugin.cli import gmm as cli_gmm
from llmweb_plugin.proxies import GMMInjection, InteractingGMMWeb, gmm_preset


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="llmweb")
    sub = parser.add_subparsers(dest="command", required=True)
    cli_gmm.add_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_gmm_preset_writes_csv_json_png_and_prints_table(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    rc = _run(["gmm", "--preset", "lwd-fig4", "--steps", "30", "--seed", "0",
               "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "||D(t)||_F" in out and "mean" in out and "t=25" in out
    rows = _rows(tmp_path / "gmm-lwd-fig4.csv")
    assert len(rows) == 31
    expected = gmm_preset("lwd-fig4", n_steps=30).run(rng=0)
    got = np.array([[float(r[f"norm_rep{i}"]) for i in range(5)] for r in rows])
    np.testing.assert_allclose(got, expected.norms, rtol=1e-9)
    assert [int(r["a_size"]) for r in rows] == expected.a_sizes.tolist()
    data = json.loads((tmp_path / "gmm-lwd-fig4.json").read_text())
    assert data["params"]["n_agents"] == 3 and data["seed"] == 0
    assert data["result"]["mean_norms"] == pytest.approx(expected.mean_norms.tolist())
    png = (tmp_path / "gmm-lwd-fig4.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_gmm_free_parameters_and_injection(tmp_path, capsys):
    rc = _run(["gmm", "--n-agents", "4", "--means=-3,0,3", "--cov", "0.5", "--beta", "0.4",
               "--responses", "2", "--steps", "6", "--replicates", "2",
               "--inject-points", "5", "--inject-weights", "0.2,0.3,0.5", "--seed", "3",
               "--out", str(tmp_path), "--name", "custom", "--no-plot"])
    assert rc == 0
    assert not (tmp_path / "custom.png").exists()
    sim = InteractingGMMWeb(n_agents=4, means=[-3.0, 0.0, 3.0], cov=0.5, beta=0.4,
                            samples_per_step=2, n_steps=6, n_replicates=2,
                            injection=GMMInjection(weights=[0.2, 0.3, 0.5], n_points=5))
    expected = sim.run(rng=3)
    rows = _rows(tmp_path / "custom.csv")
    np.testing.assert_allclose([float(r["norm_mean"]) for r in rows], expected.mean_norms,
                               rtol=1e-9)
    np.testing.assert_allclose([float(r["synthetic_fraction"]) for r in rows],
                               expected.synthetic_fraction, rtol=1e-5)
    data = json.loads((tmp_path / "custom.json").read_text())
    assert data["params"]["injection"] == {"weights": [0.2, 0.3, 0.5], "n_points": 5}


def test_gmm_bad_parameter_exits_2_with_message(tmp_path, capsys):
    assert _run(["gmm", "--beta", "1.5", "--out", str(tmp_path), "--no-plot"]) == 2
    assert "beta must lie in (0, 1]" in capsys.readouterr().err
    assert _run(["gmm", "--preset", "companion-silo", "--out", str(tmp_path)]) == 2
    assert "llmweb silo" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _run(["gmm", "--n-agents", "three"])


def test_gmm_unknown_preset(tmp_path, capsys):
    assert _run(["gmm", "--preset", "nope", "--out", str(tmp_path), "--no-plot"]) == 2
    assert "unknown preset" in capsys.readouterr().err


def test_silo_sweep_over_k(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    rc = _run(["silo", "--n-neighbors", "1,29", "--replicates", "3", "--steps", "40",
               "--seed", "1", "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "silos at T" in out
    rows = _rows(tmp_path / "silo-companion-silo.csv")
    assert [int(r["n_neighbors"]) for r in rows] == [1, 29]
    base = gmm_preset("companion-silo", n_replicates=3, n_steps=40)
    for row, k in zip(rows, (1, 29)):
        res = dataclasses.replace(base, n_neighbors=k).run(rng=1)
        assert float(row["silos_mean"]) == pytest.approx(res.final_silos.mean())
    assert float(rows[0]["silos_mean"]) > float(rows[1]["silos_mean"])
    data = json.loads((tmp_path / "silo-companion-silo.json").read_text())
    assert len(data["runs"]) == 2 and data["params"]["n_agents"] == 30
    assert (tmp_path / "silo-companion-silo.png").stat().st_size > 5000


def test_silo_bad_parameters(tmp_path, capsys):
    assert _run(["silo", "--n-neighbors", "40", "--out", str(tmp_path), "--no-plot"]) == 2
    assert "n_neighbors" in capsys.readouterr().err
    assert _run(["silo", "--preset", "lwd-fig4", "--out", str(tmp_path), "--no-plot"]) == 2


def test_missing_matplotlib_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install 'llmweb-plugin\[report\]'"):
        cli_gmm._pyplot()


def test_gmm_means_not_json_is_an_argparse_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        _run(["gmm", "--means", "not json", "--out", str(tmp_path), "--no-plot"])
    assert exc.value.code == 2
    assert "argument --means: invalid _array value: 'not json'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        _run(["gmm", "--means", "[1,", "--out", str(tmp_path), "--no-plot"])
    assert exc.value.code == 2
    assert "argument --means: invalid _array value: '[1,'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("weights", "shape"), [("0.5,0.3,0.2", "(3,)"), ("1", "(1,)")])
def test_gmm_inject_weights_of_wrong_length_exits_2(tmp_path, capsys, weights, shape):
    # lwd-fig4 has B = 2 components
    rc = _run(["gmm", "--inject-points", "3", "--inject-weights", weights, "--steps", "3",
               "--out", str(tmp_path), "--no-plot"])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"llmweb gmm: error: injection.weights must have shape (B,) = (2,); got {shape}" in err
    assert not any(tmp_path.iterdir())


def test_gmm_inject_weights_wrong_length_through_main(tmp_path, capsys):
    from llmweb_plugin.cli import main

    assert main(["gmm", "--inject-weights", "0.5,0.5,0.0", "--out", str(tmp_path),
                 "--no-plot"]) == 2
    assert "injection.weights must have shape (B,) = (2,); got (3,)" in capsys.readouterr().err
