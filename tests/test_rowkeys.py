"""Row keys (``spark_em.core.rowkeys``): the vectorised, blocked hash against a plain
row-by-row reference written here from its definition -- SplitMix64's finaliser over the
float64 bits of each value (-0.0 read as 0.0), chained from the seed."""

from __future__ import annotations

import struct

import numpy as np

from spark_em.core.rowkeys import _HASH_BLOCK_ROWS, row_hash

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def reference_key(row, seed: int) -> int:
    h = mix((seed + GOLDEN) & MASK)
    for value in row:
        value = 0.0 if value == 0.0 else float(value)  # -0.0 -> 0.0 (NaN stays NaN)
        bits = struct.unpack("<Q", struct.pack("<d", value))[0]
        h = (mix(h ^ bits) + GOLDEN) & MASK
    return mix(h)


def test_row_keys_match_the_row_by_row_definition_across_blocks():
    rng = np.random.default_rng(4)
    n = _HASH_BLOCK_ROWS + 77  # two blocks, the second short
    X = rng.normal(scale=1e3, size=(n, 3))
    X[::5, 0] = -0.0
    X[1::7, 1] = np.nan
    X[2::11, 2] = np.inf
    X[3] = X[4]  # identical rows, identical keys
    for seed in (0, 9, 2**40 + 3):
        keys = row_hash(X, seed)
        expected = [reference_key(row, seed) for row in X.tolist()]
        assert keys.dtype == np.uint64 and keys.tolist() == expected
    assert row_hash(X, 1)[3] == row_hash(X, 1)[4]
    # -0.0 and 0.0 are one value; float32 rows hash as their float64 values
    assert row_hash(np.array([[-0.0, 1.0]]), 5)[0] == row_hash(np.array([[0.0, 1.0]]), 5)[0]
    x32 = X[:100].astype(np.float32)
    assert row_hash(x32, 2).tolist() == row_hash(x32.astype(np.float64), 2).tolist()
    assert row_hash(np.zeros((0, 3)), 1).shape == (0,)
