"""The numerics of the two tests: OLS slopes with Bartlett-HAC errors, the late half's long-run
variance, the window difference, and Student's t without scipy.

Everything is vectorised over the rows of ``Y`` (one series per row).
"""

from __future__ import annotations

import math

import numpy as np

from ._window_rule import _window_sizes


def _bandwidth(n: int) -> int:
    """Bartlett bandwidth ``M``: lags ``0..M-1`` get weight ``1 - j/M`` (fixed b = 1/2)."""
    return max(2, n // 2)


def _ols_hac(Y: np.ndarray, t: np.ndarray, M: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OLS slopes, Bartlett-HAC standard errors and residuals of each row of ``Y`` on ``t``.

    Args:
        Y: values, shape ``(m, n)``, finite.
        t: steps, shape ``(n,)``, not all equal.
        M: Bartlett bandwidth.

    Returns:
        ``(slope (m,), se (m,), resid (m, n))``.
    """
    n = t.shape[0]
    tc = t - t.mean()
    sxx = float(tc @ tc)
    Yc = Y - Y.mean(axis=1, keepdims=True)
    b = Yc @ tc / sxx
    e = Yc - b[:, None] * tc
    v = e * tc
    nfft = 1 << math.ceil(math.log2(2 * n))
    F = np.fft.rfft(v, nfft, axis=1)
    gam = np.fft.irfft(F.real**2 + F.imag**2, nfft, axis=1)[:, :M]  # sum_t v_t v_{t+j}
    w = 1.0 - np.arange(M) / M
    w[1:] *= 2.0
    S = np.maximum(gam @ w, 0.0)
    return b, np.sqrt(S) / sxx, e


def _late_lrv(Y: np.ndarray) -> np.ndarray:
    """Bartlett long-run variance of the noise in the late half of each row of ``Y`` (m, n).

    The late half (last ``h = n // 2`` values) is detrended by its own OLS line; the bandwidth is
    ``max(2, h // 2)`` (fixed b = 1/2 of the half). Shape ``(m,)``.
    """
    n = Y.shape[1]
    h = n // 2
    R = Y[:, n - h:]
    s = np.arange(h, dtype=np.float64)
    sc = s - s.mean()
    Rc = R - R.mean(axis=1, keepdims=True)
    E = Rc - np.outer(Rc @ sc / (sc @ sc), sc)
    M = max(2, h // 2)
    nfft = 1 << math.ceil(math.log2(2 * h))
    F = np.fft.rfft(E, nfft, axis=1)
    gam = np.fft.irfft(F.real**2 + F.imag**2, nfft, axis=1)[:, :M] / h
    wt = 1.0 - np.arange(M) / M
    wt[1:] *= 2.0
    return np.maximum(gam @ wt, 0.0)


def _window_diff(Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Late-minus-early window mean and its standard error from the late half's noise.

    ``se = sigma_LR * sqrt(2 / w)`` with ``sigma_LR^2`` from :func:`_late_lrv`: the noise scale
    comes from the late half only, so a drop inside the early window does not inflate it.
    """
    n = Y.shape[1]
    w = _window_sizes(n)
    d = Y[:, n - w:].mean(axis=1) - Y[:, :w].mean(axis=1)
    return d, np.sqrt(_late_lrv(Y) * 2.0 / w)


def _t_abs_cdf(x: np.ndarray, df: int) -> np.ndarray:
    """``P(|T| <= x)`` for Student's t with integer ``df >= 1`` (Abramowitz & Stegun 26.7.3-4)."""
    x = np.abs(np.asarray(x, dtype=np.float64))
    theta = np.arctan(x / math.sqrt(df))
    s, c2 = np.sin(theta), np.cos(theta) ** 2
    if df % 2 == 1:
        total = np.zeros_like(x)
        if df > 1:
            term = np.ones_like(x)
            total = term.copy()
            for k in range(3, df - 1, 2):  # terms (2*4*..*(k-1))/(1*3*..*k) cos^(k-1)
                term = term * c2 * (k - 1) / k
                total = total + term
            total = s * np.sqrt(c2) * total
        return (2.0 / math.pi) * (theta + total)
    term = np.ones_like(x)
    total = term.copy()
    for k in range(2, df - 1, 2):  # terms (1*3*..*(k-1))/(2*4*..*k) cos^k
        term = term * c2 * (k - 1) / k
        total = total + term
    return s * total


def _t_quantile(q: float, df: int) -> float:
    """Two-sided critical value: ``x`` with ``P(|T| <= x) = q`` (bisection on the angle)."""
    lo, hi = 0.0, math.pi / 2
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if float(_t_abs_cdf(np.array(math.sqrt(df) * math.tan(mid)), df)) < q:
            lo = mid
        else:
            hi = mid
    return math.sqrt(df) * math.tan(0.5 * (lo + hi))
