"""Classical (Torgerson) multidimensional scaling, pure numpy: the paper's Fig. 3 projection.

Classical MDS double-centres the squared distance matrix, ``B = -1/2 J D^2 J`` with
``J = I - 11^T / n``, and takes the top eigenvectors of ``B`` scaled by the square roots of their
eigenvalues. For Euclidean distances ``B`` is the Gram matrix of the centred points, so points
that truly lie in a ``k``-dimensional affine subspace are reproduced exactly (up to a rotation or
reflection) by a ``k``-component embedding.

Example:
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0, 1.0], [3.0, 0.0, 1.0], [0.0, 4.0, 1.0]])  # a plane in 3-D
    >>> Y = classical_mds(X)
    >>> bool(np.allclose(np.linalg.norm(Y[0] - Y[1]), 3.0))
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..metrics import distance_matrix

__all__ = ["MDSResult", "classical_mds", "classical_mds_full"]


@dataclass(frozen=True, kw_only=True)
class MDSResult:
    """A classical MDS embedding with its spectrum.

    Attributes:
        coords: the embedding, shape ``(n_samples, n_components)``.
        eigenvalues: the top ``n_components`` eigenvalues of ``B`` (negatives clipped to 0).
        explained: each component's share of the positive spectrum of ``B`` (NaN if it is 0).
    """

    coords: np.ndarray
    eigenvalues: np.ndarray
    explained: np.ndarray


def _check_distances(D: np.ndarray) -> np.ndarray:
    if D.ndim != 2 or D.shape[0] != D.shape[1]:
        raise ValueError(f"distances must be a square (n, n) matrix; got shape {D.shape}")
    if not np.all(np.isfinite(D)):
        raise ValueError("distances contains NaN or infinite values")
    if np.any(D < 0):
        raise ValueError("distances must be non-negative")
    if not np.allclose(D, D.T, rtol=1e-7, atol=1e-9):
        raise ValueError("distances must be symmetric")
    return D


def classical_mds_full(
    X: object | None = None, *, distances: object | None = None, n_components: int = 2
) -> MDSResult:
    """Classical MDS of points ``X`` (shape ``(n, dim)``) or of a distance matrix.

    Args:
        X: the points, shape ``(n_samples, dim)``; Euclidean distances between rows are used.
        distances: a symmetric ``(n, n)`` distance matrix instead of ``X``.
        n_components: output dimension, at least 1.

    Returns:
        An :class:`MDSResult`. Components whose eigenvalue is not positive are zero columns (e.g.
        all points equal, or fewer than ``n_components + 1`` points). Each column's sign is fixed
        so that its largest-magnitude entry is positive, which makes the output deterministic.

    Raises:
        ValueError: neither or both inputs given, bad shapes, or ``n_components < 1``.
    """
    if (X is None) == (distances is None):
        raise ValueError("pass exactly one of X (points) or distances= (an (n, n) matrix)")
    if isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1:
        raise ValueError(f"n_components must be a positive integer; got {n_components!r}")
    if X is not None:
        D = distance_matrix(X)
    else:
        D = _check_distances(np.asarray(distances, dtype=np.float64))
    n = D.shape[0]
    if n == 0:
        raise ValueError("classical_mds needs at least one point")
    D2 = D * D
    # double centring without forming J: B = -1/2 (D2 - row means - col means + grand mean)
    row = D2.mean(axis=1, keepdims=True)
    col = D2.mean(axis=0, keepdims=True)
    B = -0.5 * (D2 - row - col + D2.mean())
    B = 0.5 * (B + B.T)
    vals, vecs = np.linalg.eigh(B)
    order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    k = min(n_components, n)
    top = np.maximum(vals[:k], 0.0)
    # eigenvalues at rounding level of the spectrum are zero
    tol = max(float(np.abs(vals).max(initial=0.0)), 1e-300) * n * np.finfo(float).eps * 10
    top = np.where(top > tol, top, 0.0)
    coords = np.zeros((n, n_components))
    coords[:, :k] = vecs[:, :k] * np.sqrt(top)[None, :]
    for j in range(k):
        col_j = coords[:, j]
        if col_j.size and col_j[np.argmax(np.abs(col_j))] < 0:
            coords[:, j] = -col_j
    eig = np.zeros(n_components)
    eig[:k] = top
    pos = vals[vals > tol].sum()
    explained = eig / pos if pos > 0 else np.full(n_components, np.nan)
    return MDSResult(coords=coords, eigenvalues=eig, explained=explained)


def classical_mds(
    X: object | None = None, *, distances: object | None = None, n_components: int = 2
) -> np.ndarray:
    """The coordinates of :func:`classical_mds_full`: shape ``(n_samples, n_components)``."""
    return classical_mds_full(X, distances=distances, n_components=n_components).coords
