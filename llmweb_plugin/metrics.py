"""Collapse and diversity metrics, pure numpy.

The paper's statistic is the Frobenius norm of the Euclidean distance matrix between the
per-agent mean embeddings, ``||D||_F`` with ``D[i, j] = ||x_i - x_j||_2``. For ``m`` vectors with
mean ``x_bar`` the identity

    sum_ij ||x_i - x_j||^2 = 2 m * sum_i ||x_i - x_bar||^2

gives ``||D||_F`` in ``O(m d)`` time and ``O(d)`` extra memory: no ``m x m`` matrix is built.

Example:
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [3.0, 4.0]])
    >>> round(collapse_norm(X), 6)           # D = [[0, 5], [5, 0]]
    7.071068
    >>> round(normalized_collapse_norm(X), 6)  # RMS distance over ordered pairs
    5.0
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "Spread",
    "StepAccumulator",
    "StepMetrics",
    "collapse_norm",
    "distance_matrix",
    "distinct_n",
    "mean_cosine_distance",
    "normalized_collapse_norm",
    "spread",
    "step_metrics",
    "vendi_score",
]

_CHUNK_ROWS = 128  # blocks of 128 x 384 stay in L1/L2 cache


def _as_2d(X: object, name: str = "X") -> np.ndarray:
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (n_samples, dim); got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must be numeric; got dtype {arr.dtype}")
    return arr


def _check_finite(arr: np.ndarray, name: str) -> None:
    """Raise a ``ValueError`` naming ``name`` when ``arr`` holds NaN or inf (one ``O(size)`` pass)."""
    if arr.size and not np.isfinite(arr).all():
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(
            f"{name} contains NaN or inf (first at index {where}); metrics are undefined for "
            "non-finite values: drop or repair those rows first"
        )


def _pow2_scale(maxabs: np.ndarray) -> np.ndarray:
    """A power of two ``s`` with ``maxabs / s`` in ``[1, 2)`` (1 where ``maxabs`` is 0).

    Dividing by a power of two is exact, so rescaling costs no precision.
    """
    _, exp = np.frexp(maxabs)
    return np.where(maxabs > 0, np.ldexp(1.0, exp - 1), 1.0)


def _scaled_unit_rows(E: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit rows of the nonzero rows of ``E`` (float64), and the mask of those rows.

    Each row is first divided by its largest magnitude, so rows near 1e200 do not overflow and
    rows near 1e-200 do not underflow when squared.
    """
    maxabs = np.max(np.abs(E), axis=1) if E.shape[1] else np.zeros(E.shape[0])
    ok = maxabs > 0
    W = E[ok] / maxabs[ok, None]
    return W / np.linalg.norm(W, axis=1)[:, None], ok


def _sum_sq_dev(X: np.ndarray) -> np.ndarray:
    """``sum_i ||x_i - x_bar||^2`` over axis -2, accumulated in float64.

    2-D input is streamed in blocks of :data:`_CHUNK_ROWS` rows through one buffer that stays in
    cache: each block is shifted by the first row (which removes any common offset, so
    near-identical rows keep their precision; for float32 input the difference of two nearby
    float32 numbers is exact), then its column sums (one ``gemv``) and its rows' squared norms are
    added to float64 accumulators; ``sum ||x - c||^2 - m ||x_bar - c||^2`` gives the result in one
    pass over ``X``. Float32 input (embeddings) is worked in float32 inside a block: each row's
    squared norm is a SIMD sum of ``d`` terms (error near 1e-8; one float32 dot product over a
    whole block lost about 1e-6), and the pass runs at 1.3-1.7x the time of one ``X.sum()``
    (``benchmarks/bench_metrics.py``). Other input is worked in float64.

    Args:
        X: array of shape ``(..., m, d)``.

    Returns:
        Array of shape ``(...)`` (a 0-d array for 2-D input).
    """
    m = X.shape[-2]
    if m == 0:
        return np.zeros(X.shape[:-2])
    if X.ndim == 2:
        work = np.float32 if X.dtype == np.float32 else np.float64
        d = X.shape[1]
        shift = X[0].astype(work)
        col = np.zeros(d)
        sq = 0.0
        rows = min(m, _CHUNK_ROWS)
        buf = np.empty((rows, d), dtype=work)
        ones = np.ones(rows, dtype=work)
        for start in range(0, m, _CHUNK_ROWS):
            blk = X[start : start + _CHUNK_ROWS]
            n = blk.shape[0]
            b = buf[:n]
            np.subtract(blk, shift, out=b)
            col += ones[:n] @ b
            sq += float(np.einsum("ij,ij->i", b, b).sum(dtype=np.float64))
        mean = col / m
        return np.asarray(max(sq - m * float(mean @ mean), 0.0))
    mean = X.sum(axis=-2, dtype=np.float64, keepdims=True) / m
    dev = X - mean
    return np.einsum("...ij,...ij->...", dev, dev)


def _sum_sq_dev_scaled(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray | float]:
    """``(ssd, scale)`` with ``sum_i ||x_i - x_bar||^2 == ssd * scale**2``, safe from overflow.

    The fast pass (:func:`_sum_sq_dev`) runs first. Only when its result is not finite (NaN or
    inf input, or squares past the float range: ``|x| > 1e154`` in float64, ``1e19`` in float32)
    or so small that squares may have underflowed does a second pass check the input (a
    ``ValueError`` naming ``X`` for NaN/inf) and recompute on ``X`` divided by a power of two
    near its largest magnitude. Typical input pays nothing for the checks.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # judged below, on the result
        ssd = _sum_sq_dev(arr)
    if arr.size == 0:
        return ssd, 1.0
    tiny = 1e-30 if arr.dtype == np.float32 else 1e-290
    if np.all(np.isfinite(ssd) & (ssd >= tiny)):
        return ssd, 1.0
    _check_finite(arr, "X")
    work = np.float32 if arr.dtype == np.float32 else np.float64
    scale = _pow2_scale(np.max(np.abs(arr), axis=(-2, -1), keepdims=True).astype(np.float64))
    scaled = (arr / scale.astype(work)).astype(work, copy=False)
    return _sum_sq_dev(scaled), scale.reshape(scale.shape[:-2])


def collapse_norm(X: object) -> float | np.ndarray:
    """Frobenius norm of the pairwise Euclidean distance matrix between the rows of ``X``.

    Computed as ``sqrt(2 m sum_i ||x_i - x_bar||^2)`` in ``O(m d)``; equal to
    ``np.linalg.norm(distance_matrix(X))`` up to rounding. Input of any magnitude that the
    result can represent is handled (``X`` near 1e150 or 1e-200 is rescaled, not squared
    into inf or 0).

    Args:
        X: array of shape ``(m, dim)`` (e.g. the per-agent mean embeddings), or a batch of
            shape ``(..., m, dim)``.

    Returns:
        A float for 2-D input, an array of shape ``(...)`` for batched input. Zero when
        ``m <= 1`` (a single agent has no pairwise distances).

    Raises:
        ValueError: ``X`` has fewer than 2 dimensions, or contains NaN or inf.

    Example:
        >>> collapse_norm([[1.0], [1.0], [1.0]])
        0.0
    """
    arr = np.asarray(X)
    if arr.ndim < 2:
        raise ValueError(f"X must have shape (m, dim) or (..., m, dim); got shape {arr.shape}")
    m = arr.shape[-2]
    ssd, scale = _sum_sq_dev_scaled(arr)
    out = scale * math.sqrt(2.0 * m) * np.sqrt(np.maximum(ssd, 0.0))  # 2 m ssd may overflow
    return float(out) if arr.ndim == 2 else out


def normalized_collapse_norm(X: object) -> float | np.ndarray:
    """``||D||_F / sqrt(m (m - 1))``: the root-mean-square distance over ordered pairs ``i != j``.

    ``||D||_F`` grows with the number of agents (it sums ``m (m - 1)`` entries); this form does
    not, so webs of different sizes can be compared. NaN when ``m < 2``.

    Args:
        X: array of shape ``(m, dim)`` or ``(..., m, dim)``.
    """
    arr = np.asarray(X)
    if arr.ndim < 2:
        raise ValueError(f"X must have shape (m, dim) or (..., m, dim); got shape {arr.shape}")
    m = arr.shape[-2]
    norm = collapse_norm(arr)
    if m < 2:
        return float("nan") if arr.ndim == 2 else np.full(arr.shape[:-2], np.nan)
    return norm / math.sqrt(m * (m - 1))


def distance_matrix(X: object) -> np.ndarray:
    """The full ``(m, m)`` Euclidean distance matrix between rows, for display.

    Rows are rescaled by a power of two and centred first (``O(m d)``), so values far from the
    origin keep their precision and large values do not overflow.

    Args:
        X: array of shape ``(m, dim)``.

    Returns:
        Symmetric float64 array of shape ``(m, m)`` with a zero diagonal.

    Raises:
        ValueError: ``X`` is not 2-D, or contains NaN or inf.
    """
    arr = _as_2d(X).astype(np.float64, copy=False)
    _check_finite(arr, "X")
    scale = 1.0
    if arr.size:
        scale = float(_pow2_scale(np.max(np.abs(arr))))
        arr = arr / scale
        arr = arr - arr.mean(axis=0)
    sq = np.einsum("ij,ij->i", arr, arr)
    d2 = sq[:, None] + sq[None, :] - 2.0 * arr @ arr.T
    np.maximum(d2, 0.0, out=d2)
    np.fill_diagonal(d2, 0.0)
    return scale * np.sqrt(d2)


@dataclass(frozen=True, kw_only=True)
class Spread:
    """Total spread of a point cloud split into within- and between-agent parts.

    All three are mean squared distances per sample: ``total = within + between`` where
    ``total = mean_i ||e_i - e_bar||^2``, ``within = mean_i ||e_i - mu_{a(i)}||^2`` and
    ``between = sum_a (n_a / N) ||mu_a - e_bar||^2``.

    Attributes:
        total: total spread.
        within: average spread of each agent's cloud around its own mean.
        between: spread of the agent means around the grand mean (weighted by counts).
        per_agent: mean squared distance to the agent's own mean, per agent label.
        counts: number of samples per agent label.
    """

    total: float
    within: float
    between: float
    per_agent: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


def _label_keys(
    labels: Iterable[object], name: str, seen: dict[str, type] | None = None
) -> list[str]:
    """The text key ``str(label)`` of each label; refuses two label types with the same text.

    Results are keyed by text, so ``1`` and ``"1"`` would silently become one agent: that is a
    ``ValueError`` instead. ``seen`` (text -> type) carries the types across calls and is only
    updated when every label passes.
    """
    local = dict(seen) if seen is not None else {}
    keys = []
    for x in labels:
        if type(x) is not str and isinstance(x, np.generic):
            x = x.item()
        t: type = type(x)
        k = str(x)
        prev = local.setdefault(k, t)
        if prev is not t:
            raise ValueError(
                f"{name} holds two different labels written {k!r}, one of type {prev.__name__} "
                f"and one of type {t.__name__}; agents are keyed by their text, so these would "
                f"be merged into one. Use labels of one type (e.g. all str)."
            )
        keys.append(k)
    if seen is not None:
        seen.update(local)
    return keys


def spread(embeddings: object, labels: Sequence[object]) -> Spread:
    """Split the spread of ``embeddings`` into within- and between-agent parts.

    Args:
        embeddings: array of shape ``(n_samples, dim)``.
        labels: agent label per row, length ``n_samples``. Labels are grouped by their text
            ``str(label)`` (the keys of ``per_agent`` and ``counts``); numpy scalars count as
            the Python value they hold.

    Returns:
        A :class:`Spread`; ``total == within + between`` up to rounding.

    Raises:
        ValueError: lengths differ, ``embeddings`` contains NaN or inf, or two labels of
            different types have the same text (``1`` and ``"1"``), which would merge two agents.

    Example:
        >>> s = spread([[0.0], [2.0], [10.0], [12.0]], ["a", "a", "b", "b"])
        >>> (s.within, s.between, s.total)
        (1.0, 25.0, 26.0)
    """
    E = _as_2d(embeddings, "embeddings").astype(np.float64, copy=False)
    labels = list(labels)
    if len(labels) != E.shape[0]:
        raise ValueError(
            f"labels has {len(labels)} entries but embeddings has {E.shape[0]} rows; "
            "pass one label per row"
        )
    if E.shape[0] == 0:
        raise ValueError("spread needs at least one embedding")
    _check_finite(E, "embeddings")
    keys = _label_keys(labels, "labels")
    E = E - E[0]  # translation-invariant; keeps the precision of clouds far from the origin
    uniq, inv = np.unique(np.asarray(keys, dtype=object), return_inverse=True)
    counts = np.bincount(inv, minlength=len(uniq)).astype(np.float64)
    sums = np.zeros((len(uniq), E.shape[1]))
    np.add.at(sums, inv, E)
    means = sums / counts[:, None]
    grand = E.mean(axis=0)
    dev_within = E - means[inv]
    per_row = np.einsum("ij,ij->i", dev_within, dev_within)
    per_agent_sum = np.bincount(inv, weights=per_row, minlength=len(uniq))
    n = float(E.shape[0])
    within = float(per_agent_sum.sum() / n)
    dm = means - grand
    between = float((counts * np.einsum("ij,ij->i", dm, dm)).sum() / n)
    dev = E - grand
    total = float(np.einsum("ij,ij->", dev, dev) / n)
    return Spread(
        total=total,
        within=within,
        between=between,
        per_agent={str(k): float(v / c) for k, v, c in zip(uniq, per_agent_sum, counts)},
        counts={str(k): int(c) for k, c in zip(uniq, counts)},
    )


def _unit_rows(E: np.ndarray, name: str = "embeddings") -> np.ndarray:
    _check_finite(E, name)
    U, ok = _scaled_unit_rows(E)
    if not ok.all():
        raise ValueError(
            f"{name} contains a zero vector (row {int(np.argmin(ok))}); cosine distance is "
            "undefined for it: drop it first"
        )
    return U


def mean_cosine_distance(embeddings: object) -> float:
    """Mean of ``1 - cos(e_i, e_j)`` over unordered pairs ``i < j``, in ``O(n d)``.

    Uses ``sum_{i != j} u_i . u_j = ||sum_i u_i||^2 - n`` for unit rows ``u_i``.

    Args:
        embeddings: array of shape ``(n_samples, dim)`` with ``n_samples >= 2``, no zero rows and
            no NaN or inf (each is a ``ValueError``).

    Example:
        >>> mean_cosine_distance([[1.0, 0.0], [0.0, 1.0]])
        1.0
    """
    E = _as_2d(embeddings, "embeddings").astype(np.float64, copy=False)
    n = E.shape[0]
    if n < 2:
        raise ValueError(f"mean_cosine_distance needs at least 2 embeddings; got {n}")
    U = _unit_rows(E)
    s = U.sum(axis=0)
    mean_sim = (float(s @ s) - n) / (n * (n - 1))
    return 1.0 - mean_sim


def vendi_score(embeddings: object) -> float:
    """Vendi score with the cosine (normalised linear) kernel: ``exp(entropy of eig(K / n))``.

    ``K = U U^T`` for unit rows ``U``. When ``n > dim`` the nonzero spectrum is taken from the
    ``dim x dim`` dual ``U^T U / n`` instead. The score lies in ``[1, min(n, dim)]``: 1 when all
    embeddings point the same way, ``n`` when they are orthogonal.

    Args:
        embeddings: array of shape ``(n_samples, dim)`` with no zero rows and no NaN or inf
            (each is a ``ValueError``).

    Example:
        >>> round(vendi_score([[1.0, 0.0], [0.0, 1.0]]), 6)
        2.0
    """
    E = _as_2d(embeddings, "embeddings").astype(np.float64, copy=False)
    n, d = E.shape
    if n == 0:
        raise ValueError("vendi_score needs at least one embedding")
    U = _unit_rows(E)
    gram = (U.T @ U) if n > d else (U @ U.T)
    eig = np.linalg.eigvalsh(gram / n)
    eig = eig[eig > 1e-12]
    return float(np.exp(-(eig * np.log(eig)).sum()))


_TOKEN = re.compile(r"\w+(?:'\w+)?|[^\w\s]", re.UNICODE)


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def distinct_n(texts: Iterable[str], n: int = 2) -> float:
    """Lexical diversity: distinct n-grams divided by all n-grams over ``texts``.

    Tokens are lower-cased words and punctuation marks; n-grams do not cross text boundaries.

    Args:
        texts: the texts.
        n: n-gram length, at least 1.

    Returns:
        A value in ``[0, 1]``; ``0.0`` when no text has ``n`` tokens.

    Example:
        >>> distinct_n(["the cat", "the cat"], n=1)
        0.5
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer; got {n!r}")
    if isinstance(texts, str):
        raise TypeError("texts must be an iterable of strings, not a single string")
    seen: set[tuple[str, ...]] = set()
    total = 0
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"texts must contain str; got {type(t).__name__}")
        toks = _tokens(t)
        for i in range(len(toks) - n + 1):
            seen.add(tuple(toks[i : i + n]))
            total += 1
    return len(seen) / total if total else 0.0


@dataclass(frozen=True, kw_only=True)
class StepMetrics:
    """The paper's per-step statistics over the response embeddings of one step.

    Attributes:
        step: the step (iteration) number.
        n_agents: agents with at least one response at this step.
        n_records: responses counted at this step.
        norm: ``||D||_F`` between the agents' mean embeddings (NaN with fewer than 2 agents).
        normalized_norm: ``norm / sqrt(m (m - 1))`` (NaN with fewer than 2 agents).
        total_spread: mean squared distance to the step's grand mean.
        within_spread: mean squared distance to each record's own agent mean.
        between_spread: ``total_spread - within_spread``, the spread of the agent means.
        mean_cosine_distance: mean pairwise cosine distance over the records with a nonzero
            embedding (cosine is undefined for a zero vector); NaN with fewer than 2 of them.
        per_agent_counts: responses per agent.
        extras: further per-step numbers (web accounting, mitigation counts).
        n_zero_vectors: records whose embedding is the zero vector. They count in
            ``n_records``, the spreads and the norm, and are left out of
            ``mean_cosine_distance`` only.
    """

    step: int
    n_agents: int
    n_records: int
    norm: float
    normalized_norm: float
    total_spread: float
    within_spread: float
    between_spread: float
    mean_cosine_distance: float
    per_agent_counts: dict[str, int] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    n_zero_vectors: int = 0

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready dict (NaN becomes ``None``)."""
        out: dict[str, object] = {}
        for k, v in self.__dict__.items():
            out[k] = None if isinstance(v, float) and math.isnan(v) else v
        return out


class StepAccumulator:
    """Running sums for one step, so per-step metrics cost ``O(d)`` per record.

    Keeps, per agent, the count, and the sum and sum of squared norms of the rows *minus that
    agent's first row* (so clouds far from the origin keep their precision: no large squares
    cancel), plus the sum of unit vectors over the records with a nonzero embedding. Not
    thread-safe: the caller serialises ``add``.

    Example:
        >>> acc = StepAccumulator(step=1)
        >>> acc.add(np.array([[0.0, 1.0], [0.0, 3.0]]), ["a", "b"])
        >>> acc.metrics().norm == collapse_norm([[0.0, 1.0], [0.0, 3.0]])
        True
    """

    def __init__(self, step: int) -> None:
        self.step = step
        self._count: dict[str, int] = {}
        self._shift: dict[str, np.ndarray] = {}
        self._sum: dict[str, np.ndarray] = {}
        self._sumsq: dict[str, float] = {}
        self._types: dict[str, type] = {}
        self._unit_sum: np.ndarray | None = None
        self._n_unit = 0
        self._n_zero = 0

    def add(self, vectors: np.ndarray, agents: Sequence[str]) -> None:
        """Add rows of ``vectors`` (shape ``(n, dim)``), one agent label per row.

        Everything is checked before anything is added.

        Raises:
            ValueError: shape or length mismatch, NaN or inf in ``vectors``, or two agent labels
                of different types with the same text (see :func:`spread`).
        """
        V = _as_2d(vectors, "vectors").astype(np.float64, copy=False)
        agents = list(agents)
        if len(agents) != V.shape[0]:
            raise ValueError(
                f"agents has {len(agents)} entries but vectors has {V.shape[0]} rows; "
                "pass one agent per row"
            )
        if self._unit_sum is not None and V.shape[1] != self._unit_sum.shape[0]:
            raise ValueError(
                f"vectors has dim {V.shape[1]}; this step holds {self._unit_sum.shape[0]}-d vectors"
            )
        _check_finite(V, "vectors")
        keys = _label_keys(agents, "agents", self._types)
        if not keys:
            return
        U, ok = _scaled_unit_rows(V)
        if self._unit_sum is None:
            self._unit_sum = np.zeros(V.shape[1])
        self._unit_sum += U.sum(axis=0)
        self._n_unit += int(ok.sum())
        self._n_zero += int(len(keys) - ok.sum())
        if len(set(keys)) == 1:
            self._add_rows(keys[0], V)
            return
        groups: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            groups.setdefault(k, []).append(i)
        for k, idx in groups.items():
            self._add_rows(k, V[idx])

    def _add_rows(self, agent: str, rows: np.ndarray) -> None:
        if agent not in self._count:
            self._count[agent] = 0
            self._shift[agent] = rows[0].copy()
            self._sum[agent] = np.zeros(rows.shape[1])
            self._sumsq[agent] = 0.0
        dev = rows - self._shift[agent]
        self._count[agent] += rows.shape[0]
        self._sum[agent] += dev.sum(axis=0)
        self._sumsq[agent] += float(np.einsum("ij,ij->", dev, dev))

    @property
    def n_records(self) -> int:
        return sum(self._count.values())

    def metrics(self) -> StepMetrics:
        """The step's :class:`StepMetrics` from the running sums."""
        agents = sorted(self._count)
        n = self.n_records
        nan = float("nan")
        if n == 0:
            return StepMetrics(step=self.step, n_agents=0, n_records=0, norm=nan,
                               normalized_norm=nan, total_spread=nan, within_spread=nan,
                               between_spread=nan, mean_cosine_distance=nan)
        counts = np.array([self._count[a] for a in agents], dtype=np.float64)
        sums = np.stack([self._sum[a] for a in agents])
        sumsq = np.array([self._sumsq[a] for a in agents])
        # within: sum_a (sum_a ||x - s_a||^2 - n_a ||mu_a - s_a||^2), all relative to s_a
        dmean = sums / counts[:, None]
        within_sum = float(np.maximum(sumsq - counts * np.einsum("ij,ij->i", dmean, dmean),
                                      0.0).sum())
        # agent means relative to the first agent's first row; between from their spread
        ref = self._shift[agents[0]]
        means = np.stack([self._shift[a] - ref for a in agents]) + dmean
        grand = counts @ means / n
        dm = means - grand
        between_sum = float((counts * np.einsum("ij,ij->i", dm, dm)).sum())
        within = within_sum / n
        between = between_sum / n
        total = within + between
        m = len(agents)
        norm = collapse_norm(means) if m >= 2 else nan
        nnorm = norm / math.sqrt(m * (m - 1)) if m >= 2 else nan
        if self._n_unit >= 2 and self._unit_sum is not None:
            k = self._n_unit
            mcd = 1.0 - (float(self._unit_sum @ self._unit_sum) - k) / (k * (k - 1))
        else:
            mcd = nan
        return StepMetrics(
            step=self.step,
            n_agents=m,
            n_records=n,
            norm=float(norm),
            normalized_norm=float(nnorm),
            total_spread=total,
            within_spread=within,
            between_spread=between,
            mean_cosine_distance=mcd,
            per_agent_counts={a: self._count[a] for a in agents},
            n_zero_vectors=self._n_zero,
        )


def step_metrics(step: int, vectors: object, agents: Sequence[str]) -> StepMetrics:
    """:class:`StepMetrics` for one step's response vectors (shape ``(n, dim)``) and labels.

    Raises:
        ValueError: ``vectors`` is not 2-D or contains NaN or inf, ``agents`` has another
            length, or two agent labels of different types have the same text.
    """
    acc = StepAccumulator(step)
    acc.add(np.asarray(vectors), list(agents))
    return acc.metrics()
