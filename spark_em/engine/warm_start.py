"""A fit's start from a model (``initialModel``, a nightly update): the model's parameters
and what its own fit ended with, the checks they must pass, and their first E-step, which
the validation pass takes too (a short fit from a model reads the data once)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.missing import e_step
from ..core.mixture import GaussianParams
from ..core.precision import precision
from ..core.segment_statistics import total_of
from ..data.prepare import PreparedData


@dataclass(frozen=True)
class WarmStart:
    """A model to start EM from (``initialModel``): its parameters and, when its summary
    has them, the rows, weight sum and last mean log-likelihood of the fit that made it."""

    params: GaussianParams
    rows: int | None = None
    weight_sum: float | None = None
    last_log_likelihood: float | None = None

    def previous(self, data: PreparedData) -> float | None:
        """The mean log-likelihood the warm start comes with (sklearn's ``lower_bound_``
        with ``warm_start``), when the fit that made it saw data of the same row count and
        weight sum; else None (the first change is infinite).  So a refit from a converged
        model reports convergence after one iteration."""
        if self.last_log_likelihood is None or self.weight_sum is None:
            return None
        if self.rows != data.n_rows or not np.isclose(self.weight_sum, data.weight_sum, rtol=1e-12):
            return None
        return float(self.last_log_likelihood)

    def checked(self, k: int, covariance_type: str, d: int, features) -> GaussianParams:
        """The parameters, when the fit's ``k``, covariance type and data dimension ``d``
        are the model's; else a ValueError naming the difference."""
        p = self.params
        if p.k != k:
            raise ValueError(f"initialModel has k={p.k} but k={k}")
        if p.d != d:
            raise ValueError(
                f"initialModel has dimension {p.d} but featuresCol {features!r} has dimension {d}"
            )
        if p.covariance_type != covariance_type:
            raise ValueError(
                f"initialModel has covarianceType {p.covariance_type!r} but "
                f"covarianceType is {covariance_type!r}"
            )
        return p

    def first_step(self, k: int, covariance_type: str, marginalize: bool, dtype: str) -> tuple:
        """``(centre, [kernel])``: the first E-step for the validation pass to take too,
        about the model's own mean (the data's is not known before that pass); ``()`` for
        a model the fit will refuse (another k or covariance type: no E-step to waste)."""
        p = self.params
        if p.k != k or p.covariance_type != covariance_type:
            return ()
        return (p.centre, [e_step(p, p.centre, marginalize, dtype=precision(dtype))])

    def first_estep(self, data: PreparedData, reg_covar: float) -> tuple | None:
        """``([statistics], centre)``: the first E-step (:meth:`first_step`) as the
        validation pass took it (per segment code, in a dict, from a store that keeps each
        segment's rows apart), moments about ``centre`` (the model's mean) -- the
        iteration re-centres them on its own kernel's origin
        (:func:`~spark_em.engine.em.step`); None when the validation pass did not take it,
        or when a component's moments lost digits about the model's mean (the iteration
        then takes its E-step again, about the data's centre, as every iteration does)."""
        if not data.first_step:
            return None
        (st,) = data.first_step  # {segment code: statistics} from a keyed store
        total = total_of(st) if isinstance(st, dict) else st
        if total.imprecise(reg_covar).size:
            return None
        return [st], self.params.centre
