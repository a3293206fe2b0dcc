"""Classical MDS against brute-force checks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from llmweb_plugin.report.mds import classical_mds, classical_mds_full


def _pairwise(Y: np.ndarray) -> np.ndarray:
    n = len(Y)
    D = np.zeros((n, n))
    for i, j in itertools.product(range(n), range(n)):
        D[i, j] = np.sqrt(np.sum((Y[i] - Y[j]) ** 2))
    return D


@pytest.mark.parametrize("dim", [2, 3, 10, 384])
def test_points_on_a_plane_keep_every_distance(dim: int) -> None:
    rng = np.random.default_rng(dim)
    plane_coords = rng.normal(size=(25, 2)) * [3.0, 0.7]
    basis, _ = np.linalg.qr(rng.normal(size=(dim, 2)))  # orthonormal 2-frame in R^dim
    offset = rng.normal(size=dim)
    X = plane_coords @ basis.T + offset
    Y = classical_mds(X)
    assert Y.shape == (25, 2)
    np.testing.assert_allclose(_pairwise(Y), _pairwise(X), atol=1e-9)
    np.testing.assert_allclose(_pairwise(Y), _pairwise(plane_coords), atol=1e-9)
    # centred, and the first axis carries the larger variance
    np.testing.assert_allclose(Y.mean(axis=0), 0.0, atol=1e-9)
    assert Y[:, 0].var() >= Y[:, 1].var()


def test_distance_input_equals_point_input() -> None:
    X = np.random.default_rng(1).normal(size=(12, 5))
    np.testing.assert_allclose(classical_mds(distances=_pairwise(X)), classical_mds(X),
                               atol=1e-9)


def test_spectrum_matches_the_gram_matrix_of_centred_points() -> None:
    X = np.random.default_rng(2).normal(size=(15, 4))
    res = classical_mds_full(X, n_components=3)
    Xc = X - X.mean(axis=0)
    eig = np.sort(np.linalg.eigvalsh(Xc @ Xc.T))[::-1]
    np.testing.assert_allclose(res.eigenvalues, eig[:3], rtol=1e-9)
    np.testing.assert_allclose(res.explained, eig[:3] / eig[eig > 1e-9].sum(), rtol=1e-9)
    # a 4-d cloud needs 4 components: 2 of them lose distance, never gain it
    Y2 = classical_mds(X)
    assert np.all(_pairwise(Y2) <= _pairwise(X) + 1e-9)


def test_sign_is_deterministic_and_collinear_points_give_a_zero_second_axis() -> None:
    X = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [3.0, 3.0, 3.0]])
    Y = classical_mds(X)
    np.testing.assert_allclose(Y[:, 1], 0.0, atol=1e-12)
    assert Y[np.argmax(np.abs(Y[:, 0])), 0] > 0
    np.testing.assert_allclose(_pairwise(Y), _pairwise(X), atol=1e-9)
    np.testing.assert_allclose(classical_mds(X[::-1])[::-1], Y, atol=1e-12)


def test_degenerate_inputs() -> None:
    same = np.ones((4, 3))
    np.testing.assert_array_equal(classical_mds(same), np.zeros((4, 2)))
    assert np.isnan(classical_mds_full(same).explained).all()
    np.testing.assert_array_equal(classical_mds(np.ones((1, 3))), np.zeros((1, 2)))
    two = classical_mds(np.array([[0.0, 0.0], [0.0, 5.0]]))
    assert abs(np.linalg.norm(two[0] - two[1]) - 5.0) < 1e-12


def test_bad_inputs_say_what_to_do() -> None:
    with pytest.raises(ValueError, match="exactly one of X"):
        classical_mds()
    with pytest.raises(ValueError, match="exactly one of X"):
        classical_mds(np.zeros((2, 2)), distances=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="square"):
        classical_mds(distances=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="symmetric"):
        classical_mds(distances=np.array([[0.0, 1.0], [2.0, 0.0]]))
    with pytest.raises(ValueError, match="non-negative"):
        classical_mds(distances=np.array([[0.0, -1.0], [-1.0, 0.0]]))
    with pytest.raises(ValueError, match="NaN"):
        classical_mds(distances=np.array([[0.0, np.nan], [np.nan, 0.0]]))
    with pytest.raises(ValueError, match="n_components"):
        classical_mds(np.zeros((3, 2)), n_components=0)
    with pytest.raises(ValueError, match="at least one point"):
        classical_mds(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="shape"):
        classical_mds(np.zeros(3))
