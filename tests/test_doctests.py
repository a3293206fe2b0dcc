"""Every docstring example in the package runs and prints what it says (conventions: "a short
example that actually runs").

One test per module that has examples, found by walking the package, so a new module's examples
are held the moment they exist. Examples marked ``# doctest: +SKIP`` (they need a model server or
take minutes) are counted by doctest as skipped, not run.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import llmweb_plugin

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _modules_with_examples() -> list[str]:
    names = [llmweb_plugin.__name__]
    for info in pkgutil.walk_packages(llmweb_plugin.__path__, prefix="llmweb_plugin."):
        if info.name.endswith("__main__"):
            continue
        names.append(info.name)
    found = []
    for name in sorted(names):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            continue
        with open(spec.origin, encoding="utf-8") as fh:
            if ">>> " in fh.read():
                found.append(name)
    return found


MODULES = _modules_with_examples()


def test_the_walk_finds_the_examples():
    # the core, the verdict and the simulators all carry examples; an empty walk would pass
    # every parametrised test vacuously
    for name in ("llmweb_plugin.metrics", "llmweb_plugin.trend._single",
                 "llmweb_plugin.proxies.gmm", "llmweb_plugin.monitor"):
        assert name in MODULES
    assert len(MODULES) >= 25


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # an example that writes a file writes it here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    tests = [t for t in finder.find(module, name) if t.examples]
    # a module whose '>>> ' sits outside any docstring the finder sees has nothing to run
    if not tests:
        pytest.skip(f"{name}: '>>> ' appears outside docstrings doctest collects")
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
