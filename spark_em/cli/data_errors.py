"""Invalid rows in a job's words: which columns hold the bad values, how many rows over the
whole input, one example row, and the fix -- for the error that refuses them and for the
report of a run that skipped them.  The numbers come from one Spark job over the input
(:func:`spark_em.data.bad_rows.find_bad_rows`), run only when rows were refused or skipped.
"""

from __future__ import annotations

from ..data.arrow_blocks import MAX_ABS_VALUE, MAX_WEIGHT
from ..data.bad_rows import BadRows, find_bad_rows
from ..data.columns import feature_array
from ..data.dimension import describe_lengths, length_counts
from .exit_codes import DataError

# what a column holds, per kind of value (the per-column counts)
_VALUES = {
    "null_element": "null",
    "non_finite": "NaN or infinity",
    "huge_value": f"values beyond +-{MAX_ABS_VALUE:g}",
}


class BadRowsError(DataError):
    """Invalid rows refused (exit 1); ``report``: what the failure report adds."""

    def __init__(self, message: str, details: dict):
        super().__init__(message)
        self.report = {"invalid_rows": details}


def _n(count: int) -> str:
    return f"{count:,} row{'s' if count != 1 else ''}"


def describe(
    bad: BadRows, features, weight_col: str | None, d: int, lengths: dict | None = None
) -> list[str]:
    """One phrase per problem, naming the columns that hold it and the row counts
    (``lengths``: rows by vector length, named in the wrong-length phrase)."""
    by_count = [
        (count, f"{column} holds {what} in {_n(count)}")
        for kind, what in _VALUES.items()
        for column, count in bad.by_column.get(kind, {}).items()
    ]
    phrases = [p for _, p in sorted(by_count, key=lambda c: -c[0])]  # stable: kinds' order
    kinds = bad.by_kind
    if kinds.get("null_vector"):
        phrases.append(f"featuresCol {features!r} is null in {_n(kinds['null_vector'])}")
    if kinds.get("wrong_length"):
        phrases.append(
            f"featuresCol {features!r} has vectors of a length other than {d} in "
            f"{_n(kinds['wrong_length'])}" + (f" ({describe_lengths(lengths)})" if lengths else "")
        )
    if kinds.get("null_weight"):
        phrases.append(f"weightCol {weight_col!r} is null in {_n(kinds['null_weight'])}")
    if kinds.get("negative_weight"):
        phrases.append(
            f"weightCol {weight_col!r} is negative or not finite in {_n(kinds['negative_weight'])}"
        )
    if kinds.get("huge_weight"):
        phrases.append(
            f"weightCol {weight_col!r} is above {MAX_WEIGHT:g} in {_n(kinds['huge_weight'])}"
        )
    return phrases


def _fix(bad: BadRows) -> str:
    """What to do: skip them, or (when only NaN/null elements are at fault) marginalise."""
    fix = "pass --handle-invalid skip to leave them out"
    if set(bad.by_kind) <= {"null_element", "non_finite"}:
        fix += ", or --missing-values marginalize to keep their observed values"
    return fix


def details(bad: BadRows) -> dict:
    """The report's record of invalid rows."""
    return {
        "rows": bad.total,
        "rows_read": bad.rows,
        "by_kind": bad.by_kind,
        "by_column": bad.by_column,
        "example": bad.example,
    }


def refused(
    df,
    features,
    weight_col: str | None,
    d: int,
    scoring: bool = False,
    lengths: dict | None = None,
) -> BadRowsError:
    """The error for invalid rows of ``df`` that a job refuses (one line, exit 1);
    ``lengths``: rows by vector length (from the fit's :class:`InvalidRowsError`)."""
    bad = find_bad_rows(df, features, weight_col, d, null_vectors=not scoring)
    if not bad.total:  # cannot happen: the rows were refused by the same decoding
        return BadRowsError(f"invalid rows in featuresCol {features!r}", details(bad))
    what = "scored" if scoring else "fitted"
    example = f"; first: {bad.example}" if bad.example else ""
    message = (
        f"{_n(bad.total)} of {bad.rows:,} cannot be {what}: "
        + "; ".join(describe(bad, features, weight_col, d, lengths))
        + f"{example}; {_fix(bad)}"
    )
    return BadRowsError(message, details(bad))


def skipped(df, features, weight_col: str | None, d: int) -> tuple[str, dict]:
    """``(one line, report record)`` of the invalid rows a fit left out; rows of another
    vector length are named by length (one more Spark job, only when there are some)."""
    bad = find_bad_rows(df, features, weight_col, d)
    lengths = None
    if bad.by_kind.get("wrong_length"):
        lengths = length_counts(df, feature_array(df, features))
    line = f"skipped {_n(bad.total)} of {bad.rows:,}: " + "; ".join(
        describe(bad, features, weight_col, d, lengths)
    )
    record = details(bad)
    if lengths:
        record["rows_by_length"] = {str(n): c for n, c in sorted(lengths.items())}
    return line, record
