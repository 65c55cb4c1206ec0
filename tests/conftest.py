"""Shared fixtures: seeded randomness, the one tolerance table, optional-dependency skips."""

import numpy as np
import pytest
from hypothesis import settings

# One table of tolerances per dtype, used by every test that compares a fast path
# with a reference. rtol is relative to the value; atol is relative to the scale of
# the signal (tests multiply it by max|reference|).
TOL = {
    np.dtype(np.float64): dict(rtol=1e-11, atol=1e-12),
    np.dtype(np.complex128): dict(rtol=1e-11, atol=1e-12),
    # float32: ~6e-8 unit roundoff; a recurrence accumulates O(1/(1-|a|)) roundings
    # for decays close to 1, so 2e-5 leaves room for |a| up to ~0.999.
    np.dtype(np.float32): dict(rtol=2e-5, atol=2e-5),
    np.dtype(np.complex64): dict(rtol=2e-5, atol=2e-5),
}

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
settings.load_profile("ci")


def tol(dtype):
    return TOL[np.dtype(dtype)]


def assert_close(actual, desired, dtype=None, scale=None, **override):
    """Compare with the table's tolerance for ``dtype`` (default: ``actual``'s dtype)."""
    actual = np.asarray(actual)
    desired = np.asarray(desired)
    t = dict(tol(dtype if dtype is not None else actual.dtype))
    t.update(override)
    if scale is None:
        finite = desired[np.isfinite(desired)]
        scale = float(np.max(np.abs(finite))) if finite.size else 1.0
    np.testing.assert_allclose(actual, desired, rtol=t["rtol"], atol=t["atol"] * max(scale, 1e-300),
                               equal_nan=True)


@pytest.fixture
def rng():
    return np.random.default_rng(20261128)


def random_array(rng, shape, dtype):
    dtype = np.dtype(dtype)
    x = rng.standard_normal(shape)
    if dtype.kind == "c":
        x = x + 1j * rng.standard_normal(shape)
    return x.astype(dtype)
