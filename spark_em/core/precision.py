"""The floating-point type of a fit's blocks and GEMMs: the ``dtype`` Param.  Numpy only.

``float64`` (the default) computes everything in double precision.  ``float32`` keeps the
stored blocks in single precision -- rows centred in float64 first, so an offset of the
features costs no digits -- and runs the E-step's and the moments' GEMMs in float32; every
slice's statistics are added into float64 sums, and the M-step and the parameters stay
float64 (:mod:`spark_em.core.estep`).  Where float32 cannot hold a computation, the kernel
falls back to float64: a slice whose centred coordinates exceed :attr:`Precision.max_abs`,
a mixture whose density coefficients leave :attr:`Precision.coefficient_range`, and the
components the expanded form's cancellation guard flags (:mod:`spark_em.core.densities`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tuning import (
    FLOAT32_COEFFICIENT_RANGE,
    FLOAT32_FLUSH_BELOW,
    FLOAT32_MAX_ABS,
    FLOAT32_MAX_VALUE,
    FLUSH_BELOW,
)

# Features and weights beyond this magnitude are invalid rows in a float64 fit: the
# statistics hold sums of w * x^2 over all rows, which stay far from float64's overflow
# (1.8e308) for any realistic row count only below it.
MAX_VALUE_FLOAT64 = 1e75


@dataclass(frozen=True)
class Precision:
    """One value of the ``dtype`` Param.

    * ``dtype``: the numpy type of stored blocks and of the kernel's GEMMs;
    * ``eps``: its machine epsilon (the cancellation guard's unit);
    * ``flush_below``: responsibilities below ``exp(flush_below)`` of their row's largest
      become 0 (smaller ones are subnormal in the GEMMs, many times slower);
    * ``max_value``: features and weights beyond it are invalid rows (``huge_value``,
      ``huge_weight``): the stored blocks must hold them;
    * ``max_abs``: a slice whose centred coordinates go beyond it runs in float64 (its
      products and sums would overflow this type);
    * ``coefficient_range``: a mixture whose density coefficients leave ``(low, high)``
      in magnitude runs in float64 (precisions of features of spread below ~1e-15).
    """

    name: str
    dtype: type
    eps: float
    flush_below: float
    max_value: float
    max_abs: float = np.inf
    coefficient_range: tuple[float, float] = (0.0, np.inf)

    @property
    def itemsize(self) -> int:
        return int(np.dtype(self.dtype).itemsize)

    def holds(self, coefficients: np.ndarray) -> bool:
        """Whether every nonzero ``coefficients`` magnitude lies in ``coefficient_range``."""
        low, high = self.coefficient_range
        a = np.abs(coefficients[coefficients != 0])
        return bool(a.size == 0 or (np.all(a > low) and np.all(a < high)))


FLOAT64 = Precision(
    "float64", np.float64, float(np.finfo(np.float64).eps), FLUSH_BELOW, MAX_VALUE_FLOAT64
)
FLOAT32 = Precision(
    "float32",
    np.float32,
    float(np.finfo(np.float32).eps),
    FLOAT32_FLUSH_BELOW,
    FLOAT32_MAX_VALUE,
    FLOAT32_MAX_ABS,
    FLOAT32_COEFFICIENT_RANGE,
)
PRECISIONS = {p.name: p for p in (FLOAT64, FLOAT32)}
DTYPES = tuple(PRECISIONS)


def precision(dtype) -> Precision:
    """The :class:`Precision` of a ``dtype`` value (a name, a numpy type or a Precision)."""
    if isinstance(dtype, Precision):
        return dtype
    name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    try:
        return PRECISIONS[name]
    except KeyError:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}") from None


def of_array(a: np.ndarray) -> Precision:
    """The precision an array's dtype stands for (float32 for float32, else float64)."""
    return FLOAT32 if a.dtype == np.float32 else FLOAT64
