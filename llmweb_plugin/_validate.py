"""Argument checks of :meth:`~llmweb_plugin.monitor.CollapseMonitor.record`: texts, steps, indexes.

Each returns the value as the monitor stores it, or raises a ``TypeError``/``ValueError`` that
names the argument and what to do; a bad call is refused before anything is counted.
"""

from __future__ import annotations

import math

import numpy as np


def _check_str(name: str, value: object) -> str:
    """``value`` if it is a ``str`` that UTF-8 can encode; else a ``TypeError``/``ValueError``."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be str; got {type(value).__name__}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            i = exc.start
            raise ValueError(
                f"{name} holds a lone surrogate {value[i]!r} at position {i} "
                f"(near {value[max(0, i - 20):i + 20]!r}); it cannot be encoded as UTF-8, so it "
                f"can be neither embedded nor stored. Clean the {name} first, e.g. "
                f"{name}.encode('utf-8', 'replace').decode('utf-8')."
            ) from None
    return value


def _repair_surrogates(value: str) -> tuple[str, int]:
    """``value`` made UTF-8 encodable, and how many surrogate code points it held.

    Each lone surrogate becomes U+FFFD; a well-formed surrogate pair (a character outside the BMP
    split in two, as some decoders leave it) becomes its character.
    """
    if value.isascii():
        return value, 0
    try:
        value.encode("utf-8")
        return value, 0
    except UnicodeEncodeError:
        pass
    fixed = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return fixed, sum("\ud800" <= c <= "\udfff" for c in value)


def _check_step(step: object) -> int | None:
    """``step`` as an ``int`` (``None`` stays ``None``); a ``ValueError`` naming ``step`` if bad."""
    if step is None:
        return None
    integral = isinstance(step, (int, np.integer)) and not isinstance(step, bool)
    whole_float = (isinstance(step, (float, np.floating)) and math.isfinite(step)
                   and float(step).is_integer())
    value = int(step) if integral or whole_float else None  # type: ignore[call-overload]
    if value is None or value < 0:
        raise ValueError(f"step must be a non-negative integer or None; got {step!r}")
    return value


def _check_index(index: object) -> int | None:
    if index is None:
        return None
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise ValueError(
            f"index must be a non-negative int or None (a per-key counter); got {index!r}. "
            "Records with the same (agent, step, kind, index) overwrite each other."
        )
    return int(index)
