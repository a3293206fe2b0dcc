"""matplotlib for the targets' figures, imported only when a figure is drawn.

Figures are built with the object API (``matplotlib.figure.Figure``), not pyplot, so drawing one
neither changes the caller's backend nor opens a window.
"""

from __future__ import annotations

from typing import Any

__all__ = ["new_figure"]


def new_figure(**kwargs: Any) -> Any:
    """A new ``matplotlib.figure.Figure`` (e.g. ``figsize=(8, 4)``); save with ``savefig``.

    Raises:
        ImportError: matplotlib is not installed (``pip install 'llmweb-plugin[report]'``).
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("the figure needs matplotlib: pip install 'llmweb-plugin[report]'"
                          ) from exc
    return Figure(**kwargs)
