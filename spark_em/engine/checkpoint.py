"""Checkpoints of a running fit, so that a killed job resumes where it stopped.

After each EM iteration the state of every run (restart or model-selection candidate) --
its parameters, log-likelihood history, convergence and the iteration number -- is written
to a directory on the machine of the driver program: arrays as ``.npz`` (read back with
``allow_pickle=False``: nothing executable), the rest as JSON.  Each write is atomic: the
arrays of the new iteration go to a new file, then the JSON that names them replaces the
old JSON by ``os.replace``; a crash at any point leaves the previous iteration readable.

A checkpoint records a fingerprint of the data (rows, weight sum, centre, dimension) and of
the settings; resuming with other data or other settings is refused with a message that
says in words what differs, never silently reused.  A fit that finished removes its
checkpoint (:meth:`Checkpoint.remove`), so the next run over new data starts afresh.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile

import numpy as np

from ..core.mixture import COVARIANCE_TYPES, GaussianParams
from ..core.parameter_checks import shape_problem, value_problem
from .em import Run

_STATE = "state.json"
_FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint's arrays are damaged or not a mixture's (missing, pickled, NaN, weights
    not summing to 1, a covariance not positive definite): ``path`` (the file), ``problem``
    (what is wrong); the message also says the fix (discard the checkpoint)."""

    def __init__(self, message: str, path: str = "", problem: str = ""):
        super().__init__(message)
        self.path, self.problem = path, problem


class CheckpointMismatchError(ValueError):
    """A checkpoint directory holds the state of another fit (other data or settings).

    ``directory``; ``what``: ``"rows"``, ``"features"`` or ``"settings"``; ``difference``:
    which value differs and how, in words."""

    def __init__(self, message: str, directory: str = "", what: str = "", difference: str = ""):
        super().__init__(message)
        self.directory, self.what, self.difference = directory, what, difference


def data_fingerprint(data) -> dict:
    """What identifies the prepared data (equal, up to summation order, for the same rows)."""
    return {
        "d": int(data.d),
        "rows": int(data.n_rows),
        "weight_sum": float(data.weight_sum),
        "centre": [float(c) for c in data.centre],
    }  # checked in this order


def _in_words(what: str, diff: str) -> tuple[str, str]:
    """``(kind, phrase)`` for the first difference ``diff`` of a fingerprint: the data's
    rows, its features, or the settings."""
    if what == "settings":
        return "settings", f"other settings ({diff})"
    if diff.startswith("d "):
        return "features", f"features of another dimension ({diff})"
    if diff.startswith("centre"):
        return "rows", (
            "other rows: the same number, but the features' mean differs "
            f"({diff.replace('centre.', 'mean of feature ', 1)})"
        )
    return "rows", f"other rows ({diff.replace('weight_sum', 'weight sum', 1)})"


def _same(a, b, path="") -> str | None:
    """The first difference between two fingerprints, or None (floats to 1e-9 relative)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if key not in a or key not in b:
                return f"{path + key} is only in {'this fit' if key in a else 'the checkpoint'}"
            diff = _same(a[key], b[key], f"{path}{key}.")
            if diff:
                return diff
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path.rstrip('.')} has {len(a)} entries here, {len(b)} in the checkpoint"
        for i, (x, y) in enumerate(zip(a, b)):
            diff = _same(x, y, f"{path}{i}.")
            if diff:
                return diff
        return None
    if isinstance(a, float) or isinstance(b, float):
        try:
            if abs(float(a) - float(b)) <= 1e-9 * max(abs(float(a)), abs(float(b)), 1e-300):
                return None
        except (TypeError, ValueError):
            pass
    return None if a == b else f"{path.rstrip('.')} is {a!r} here, {b!r} in the checkpoint"


class Checkpoint:
    """The checkpoint directory of one fit.  ``settings``: a JSON-able dict of everything
    that determines the fit (k, covariance types, tol, regCovar, init, seed, ...)."""

    def __init__(self, directory: str, settings: dict):
        self.directory = os.path.abspath(directory)
        self.settings = json.loads(json.dumps(settings))  # as it reads back

    @property
    def _state_path(self) -> str:
        return os.path.join(self.directory, _STATE)

    def remove(self) -> None:
        """Remove this checkpoint's files (its state, arrays and temporaries; nothing else)
        and the directory when that leaves it empty."""
        if not os.path.isdir(self.directory):
            return
        for name in os.listdir(self.directory):
            if name == _STATE or name.startswith(("arrays-", ".tmp-")):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(self.directory, name))
        with contextlib.suppress(OSError):
            os.rmdir(self.directory)

    def load(self, data) -> tuple[int, list[Run]] | None:
        """The saved state for this data and these settings: ``(last finished iteration,
        the runs as they were then)``, or None when there is none.  Raises
        :class:`CheckpointMismatchError` otherwise."""
        try:
            with open(self._state_path) as fh:
                state = json.load(fh)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise CheckpointMismatchError(
                f"checkpoint {self._state_path} cannot be read ({exc}); remove the directory "
                "to start afresh"
            ) from None
        if state.get("format") != _FORMAT:
            raise CheckpointMismatchError(
                f"checkpoint {self.directory} has format {state.get('format')!r}, not "
                f"{_FORMAT}; remove it or choose another checkpoint directory"
            )
        for what, mine in (("settings", self.settings), ("data", data_fingerprint(data))):
            diff = _same(mine, state.get(what), "")
            if diff:
                kind, words = _in_words(what, diff)
                raise CheckpointMismatchError(
                    f"checkpoint {self.directory} holds another fit: {words}; remove it, "
                    "choose another checkpoint directory, or discard it "
                    "(setCheckpointDir(path, discard=True))",
                    self.directory,
                    kind,
                    words,
                )
        runs = self._runs(state)
        return int(state["iteration"]), runs

    def _runs(self, state: dict) -> list[Run]:
        """The runs of ``state``, their arrays read from its ``.npz`` and checked as a
        loaded model's; any problem is one :class:`CheckpointError`."""
        name = state.get("arrays")
        where = os.path.join(self.directory, str(name))

        def fail(problem: str) -> CheckpointError:
            return CheckpointError(
                f"checkpoint {where}: {problem}; discard the checkpoint to start afresh "
                "(setCheckpointDir(path, discard=True), --discard-checkpoint)",
                where,
                problem,
            )

        if not isinstance(name, str) or not isinstance(state.get("runs"), list):
            raise fail("its state.json names no arrays file or no runs")
        runs = []
        try:
            with np.load(where, allow_pickle=False) as z:
                for i, run in enumerate(state["runs"]):
                    arrays = []
                    for part in ("weights", "means", "covariances"):
                        key = f"{i}_{part}"
                        if key not in z.files:
                            raise fail(f"run {i} has no {part} array ({key})")
                        a = z[key]
                        if a.dtype.kind != "f":
                            raise fail(f"{key} holds {a.dtype} values, not floating point")
                        arrays.append(np.asarray(a, dtype=np.float64))
                    ct = run.get("covariance_type")
                    if ct not in COVARIANCE_TYPES:
                        raise fail(f"run {i} has covariance type {ct!r}")
                    problem = shape_problem(*arrays, ct) or value_problem(*arrays, ct)
                    if problem:
                        raise fail(f"run {i}: {problem}")
                    params = GaussianParams.from_covariances(*arrays, ct)
                    history = [float(h) for h in run["history"]]
                    if not all(np.isfinite(history)):
                        raise fail(f"run {i}: its log-likelihood history is not finite")
                    runs.append(
                        Run(
                            params,
                            run["label"],
                            history,
                            bool(run["converged"]),
                            run["previous"],
                            float(run["seconds"]),
                            start=dict(run.get("start") or {"mode": "checkpoint"}),
                        )
                    )
        except CheckpointError:
            raise
        except ValueError as exc:
            if "pickle" in str(exc):
                raise fail("it holds pickled (object) arrays, which are never loaded") from None
            raise fail(f"its arrays cannot be read ({str(exc).splitlines()[0]})") from None
        except (OSError, KeyError, TypeError, EOFError) as exc:
            raise fail(f"its arrays cannot be read ({type(exc).__name__}: {exc})") from None
        except np.linalg.LinAlgError as exc:
            raise fail(f"its covariances cannot be factorised ({exc})") from None
        return runs

    def save(self, iteration: int, runs, data) -> None:
        """Write the state after ``iteration`` atomically (see the module docstring)."""
        os.makedirs(self.directory, exist_ok=True)
        arrays = {}
        meta = []
        for i, r in enumerate(runs):
            p = r.params
            arrays.update(
                {
                    f"{i}_weights": p.weights,
                    f"{i}_means": p.means,
                    f"{i}_covariances": p.covariances,
                }
            )
            meta.append(
                {
                    "label": r.label,
                    "covariance_type": p.covariance_type,
                    "history": [float(h) for h in r.history],
                    "converged": bool(r.converged),
                    "previous": r.previous,
                    "seconds": float(r.seconds),
                    "start": r.start,
                }
            )
        name = f"arrays-{iteration:06d}.npz"
        _atomic(os.path.join(self.directory, name), lambda fh: np.savez(fh, **arrays))
        state = {
            "format": _FORMAT,
            "iteration": iteration,
            "arrays": name,
            "runs": meta,
            "settings": self.settings,
            "data": data_fingerprint(data),
        }
        _atomic(self._state_path, lambda fh: fh.write(json.dumps(state, indent=1).encode()))
        for old in os.listdir(self.directory):  # earlier iterations' arrays
            if old.startswith("arrays-") and old != name:
                os.remove(os.path.join(self.directory, old))


def _atomic(path: str, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
