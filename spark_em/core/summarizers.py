"""What a pass over the data runs per model: a *summarizer*, and the chunks of rows it sees.
Numpy only, no Spark.

A pass (:func:`spark_em.data.passes.run_pass`) ships summarizers to the tasks; each task
makes empty statistics, adds its chunks of rows to them, packs them into one flat float64
vector, and the driver merges the packed vectors of all tasks and unpacks the result.
:class:`Summarizer` states that contract; :class:`MixtureSummarizer` is the base of every
summarizer whose statistics are a mixture's :class:`~spark_em.core.sufficient_statistics.SuffStats`
(the E-step, :mod:`spark_em.core.estep`; the initialisations,
:mod:`spark_em.core.init_summarizers`); the validation pass has its own
(:class:`~spark_em.data.validation.ValidationSummarizer`).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from .sufficient_statistics import SuffStats


class Summarizer(Protocol):
    """What a pass needs of a model's accumulator.

    * ``new_stats(d)``: empty statistics for rows of dimension ``d``;
    * ``accumulate(stats, chunk)``: add one :class:`Chunk` of rows to ``stats`` in place;
    * ``stats.pack()`` -> a flat float64 vector (what crosses the wire);
    * ``merge_packed(a, b)``: the packed statistics of the union of the rows behind ``a``
      and ``b`` (associative and commutative: tasks merge in any order and tree shape);
    * ``unpack(flat, d)``: the statistics back from their packed form on the driver.

    A summarizer is pickled to the tasks: it holds parameters, never data.
    """

    def new_stats(self, d: int) -> Any: ...

    def accumulate(self, stats: Any, chunk: Chunk) -> None: ...

    def unpack(self, flat: np.ndarray, d: int) -> Any: ...

    @staticmethod
    def merge_packed(a: np.ndarray, b: np.ndarray) -> np.ndarray: ...


class Chunk:
    """Rows of one piece of the data inside a task: ``X (n, d)``, ``w (n,)``, ``bad``
    (invalid rows dropped from it, by kind, or None) and ``Xc`` (``X - centre`` in float64,
    computed on first use and shared by every summarizer of the pass).

    ``ref (d,)``: the float64 reference a store of float32 blocks subtracted before the
    cast (``X`` holds ``x - ref``); ``centre`` is then the pass's centre about that
    reference, ``centre - ref``, so ``Xc`` and the kernels' blocks are unchanged.  None:
    ``X`` holds the rows themselves.

    ``code``: the segment every row of the chunk belongs to (its index in the fit's segment
    keys), in a store that keeps the rows of each segment apart
    (:class:`~spark_em.core.segment_statistics.KeyedSummarizer`); None otherwise."""

    __slots__ = ("X", "w", "bad", "centre", "ref", "code", "_xc")

    def __init__(self, X: np.ndarray, w: np.ndarray, centre=None, bad=None, ref=None, code=None):
        if ref is not None and centre is not None:
            centre = centre - ref
        self.X, self.w, self.centre, self.bad, self.ref = X, w, centre, bad, ref
        self.code = code
        self._xc: np.ndarray | None = None

    @property
    def Xc(self) -> np.ndarray:
        if self._xc is None:
            if self.centre is None:
                self._xc = self.X if self.ref is None else self.raw
            else:
                self._xc = np.subtract(self.X, self.centre, dtype=np.float64)
        return self._xc

    @property
    def raw(self) -> np.ndarray:
        """The rows in data coordinates, float64 (``X + ref`` for float32 blocks)."""
        if self.ref is None:
            return self.X
        return np.add(self.X, self.ref, dtype=np.float64)


class MixtureSummarizer:
    """Statistics of one mixture of ``k`` components
    (:class:`~spark_em.core.sufficient_statistics.SuffStats`),
    with moments about ``origin (k, d)`` (centred coordinates; None: about the centre)."""

    k: int
    covariance_type: str
    origin: np.ndarray | None = None

    def new_stats(self, d: int) -> SuffStats:
        return SuffStats.zeros(self.k, d, self.covariance_type, self.origin)

    def unpack(self, flat: np.ndarray, d: int) -> SuffStats:
        return SuffStats.unpack(flat, self.k, d, self.covariance_type, self.origin)

    @staticmethod
    def merge_packed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a + b  # every field of SuffStats adds


def slices(n: int, step: int):
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))
