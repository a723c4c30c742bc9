"""Rows scored and skipped by ``spark-em score``, per output partition, counted by the write
itself: Spark's observed metrics (``DataFrame.observe``) are aggregates computed as the
rows stream to the writer, so the counts cost no pass of their own.  A skipped row got
null outputs: its features are null, or invalid with ``--handle-invalid skip``.

Observed metrics cannot be grouped, so the partition values are listed first (a query of
the partition columns only; for a Hive-style input they come from the directory names)
and each gets its own pair of counts; beyond :data:`MAX_PARTITIONS` values only the totals
are counted.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

MAX_PARTITIONS = 200


@dataclass(frozen=True)
class Tally:
    """``scored``/``skipped``: totals; ``partitions``: one dict per partition value (its
    columns, ``scored``, ``skipped``), [] without ``--partition-by`` or beyond the limit."""

    scored: int
    skipped: int
    partitions: list

    def lines(self) -> list[str]:
        lines = [f"rows: {self.scored:,} scored, {self.skipped:,} skipped (null outputs)"]
        for p in self.partitions:
            key = "/".join(f"{k}={v}" for k, v in p.items() if k not in ("scored", "skipped"))
            lines.append(f"{key}: {p['scored']:,} scored, {p['skipped']:,} skipped")
        return lines

    def as_dict(self) -> dict:
        return {"scored": self.scored, "skipped": self.skipped, "partitions": self.partitions}


class ScoreCounts:
    """The counts of one score job: :meth:`observe` the scored rows before writing them,
    :meth:`result` after the write."""

    def __init__(self, df, partition_by: list[str], prediction_col: str):
        self.partition_by = list(partition_by)
        self.prediction_col = prediction_col
        self.values: list[tuple] = []
        if self.partition_by:
            rows = df.select(*self.partition_by).distinct().limit(MAX_PARTITIONS + 1).collect()
            if len(rows) <= MAX_PARTITIONS:
                self.values = sorted((tuple(r) for r in rows), key=lambda t: tuple(map(str, t)))
        self.observation = None

    def observe(self, out):
        from pyspark.sql import Observation
        from pyspark.sql import functions as F

        scored = F.col(self.prediction_col).isNotNull()
        metrics = [
            F.count_if(scored).alias("scored"),
            F.count_if(~scored).alias("skipped"),
        ]
        for i, value in enumerate(self.values):
            here = F.lit(True)
            for name, v in zip(self.partition_by, value):
                col = F.col("`" + name.replace("`", "``") + "`")
                here = here & (col.isNull() if v is None else col == F.lit(v))
            metrics += [
                F.count_if(here & scored).alias(f"s{i}"),
                F.count_if(here & ~scored).alias(f"k{i}"),
            ]
        self.observation = Observation(f"spark_em_score_{uuid.uuid4().hex[:8]}")
        return out.observe(self.observation, *metrics)

    def result(self) -> Tally:
        got = self.observation.get
        partitions = [
            dict(
                {name: _json(v) for name, v in zip(self.partition_by, value)},
                scored=int(got[f"s{i}"]),
                skipped=int(got[f"k{i}"]),
            )
            for i, value in enumerate(self.values)
        ]
        return Tally(int(got["scored"]), int(got["skipped"]), partitions)


def _json(value):
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
