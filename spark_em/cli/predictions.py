"""Predictions as a job writes them: the input rows plus ``prediction`` (int),
``probability`` (``array<double>`` by default, SQL- and BI-friendly; a Spark ML vector, or
left out) and optionally each row's log-likelihood; and the ways to write them (a Parquet
path or a catalog table, modes ``error``, ``overwrite``, ``overwrite-partitions``,
``append``).
"""

from __future__ import annotations

from .exit_codes import DataError, UsageError
from .outputs import PARQUET, Outputs

MODES = ("error", "overwrite", "overwrite-partitions", "append")


def with_predictions(
    model,
    df,
    probability_format: str,
    log_likelihood_col: str | None,
    anomaly: dict | None = None,
):
    """``df`` plus the model's prediction, probability and log-likelihood columns, and with
    ``anomaly`` (``{"column", "threshold"}``) a boolean column: the row's log-likelihood is
    below the threshold (null where the row was not scored)."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    m = model.copy()
    ll = log_likelihood_col or ("__spark_em_loglik" if anomaly else None)
    if ll:
        m.setLogLikelihoodCol(ll)
    extra = [anomaly["column"]] if anomaly else []
    check_prediction_columns(df, m, log_likelihood_col, extra)
    out = m.transform(df)
    prob = m.getProbabilityCol()
    if probability_format == "array":  # rows not scored keep a null (vector_to_array fails)
        p = F.col(prob)
        out = out.withColumn(
            prob, F.when(p.isNull(), F.lit(None)).otherwise(vector_to_array(p, "float64"))
        )
    elif probability_format == "none":
        out = out.drop(prob)
    if anomaly:
        out = out.withColumn(anomaly["column"], F.col(ll) < F.lit(float(anomaly["threshold"])))
        if not log_likelihood_col:
            out = out.drop(ll)
    return out


def check_prediction_columns(df, stage, log_likelihood_col: str | None, extra=()) -> None:
    """DataError when ``df`` already has a column that scoring with ``stage`` (the model, or
    before a fit the estimator: the same column Params) would add."""
    added = (
        [stage.getPredictionCol(), stage.getProbabilityCol()]
        + ([log_likelihood_col] if log_likelihood_col else [])
        + list(extra)
    )
    clash = [c for c in added if c in df.columns]
    if clash:
        raise DataError(
            f"the input already has a column {clash[0]!r}, which scoring adds; "
            "drop or rename it first"
        )


def check_partition_columns(df, columns: list[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(
            f"--partition-by column {missing[0]!r} does not exist; columns: {df.columns}"
        )


def _type(field) -> str:
    return field.dataType.simpleString()


def schema_difference(existing, new, partition_by: list[str]) -> str | None:
    """The first difference between an existing data set's schema and the rows' (names
    and types; nullability aside; partition columns by name, their types being inferred
    from directory names), in words, or None."""
    old = {f.name: f for f in existing.fields}
    fresh = {f.name: f for f in new.fields}
    for name, field in fresh.items():
        if name not in old:
            return f"has no column {name!r}, which the scored rows have ({_type(field)})"
        if name not in partition_by and _type(old[name]) != _type(field):
            return (
                f"holds column {name!r} as {_type(old[name])}; the scored rows have it as "
                f"{_type(field)}"
            )
    for name, field in old.items():
        if name not in fresh:
            return f"has column {name!r} ({_type(field)}), which the scored rows lack"
    return None


class PredictionWriter:
    """Where and how predictions go, checked before any work (:meth:`plan`), then written
    (:meth:`write`) and committed with the job's other outputs."""

    def __init__(
        self,
        spark,
        outputs: Outputs,
        *,
        path: str | None = None,
        table: str | None = None,
        mode: str = "error",
        partition_by: list[str] | None = None,
        flag: str = "output",
    ):
        self.spark, self.outputs = spark, outputs
        self.path, self.table, self.mode = path, table, mode
        self.partition_by = list(partition_by or [])
        self.flag = flag
        self.target = None
        self.in_place = mode in ("overwrite-partitions", "append")
        self._pending = None

    def plan(self) -> None:
        if self.table:
            exists = self.spark.catalog.tableExists(self.table)
            if exists and self.mode == "error":
                raise UsageError(
                    f"--output-table {self.table} already exists; choose --mode "
                    "overwrite, overwrite-partitions or append"
                )
            return
        if self.in_place:
            if self.outputs.ops is not None and self.outputs.ops.exists(self.path):
                from .outputs import holds_parquet

                if not holds_parquet(self.outputs.ops.list, self.path):
                    raise UsageError(
                        f"--{self.flag} {self.path} exists and does not hold a "
                        "Parquet data set: not writing into it"
                    )
            return
        self.target = self.outputs.add(self.flag, self.path, PARQUET)

    def check_schema(self, out) -> None:
        """Before writing into an existing data set or table (``append``,
        ``overwrite-partitions``): its columns must have the types of the rows about to be
        written, or the data set would hold two schemas (a later read of the whole fails
        with FAILED_READ_FILE or CANNOT_MERGE_SCHEMAS).  UsageError naming the first
        column that differs; nothing is written."""
        if not self.in_place:
            return
        existing = self._existing_schema()
        if existing is None:
            return
        what = f"--output-table {self.table}" if self.table else f"--{self.flag} {self.path}"
        problem = schema_difference(existing, out.schema, self.partition_by)
        if problem:
            raise UsageError(
                f"{what} {problem}: writing these rows would leave it with two schemas "
                "(unreadable as a whole); score with the settings that wrote it (e.g. "
                "--probability-format, --log-likelihood-col), or write elsewhere"
            )

    def _existing_schema(self):
        if self.table:
            if not self.spark.catalog.tableExists(self.table):
                return None
            return self.spark.table(self.table).schema
        if self.outputs.ops is not None and not self.outputs.ops.exists(self.path):
            return None
        try:
            return self.spark.read.parquet(self.path).schema
        except Exception:
            return None  # nothing readable there yet (an empty directory)

    def _writer(self, out):
        w = out.write
        if self.partition_by:
            w = w.partitionBy(*self.partition_by)
        return w

    def write(self, out) -> None:
        """Stage (error/overwrite on a path), or keep for the commit (in place, tables)."""
        if self.target is not None:
            self.outputs.stage(self.target, lambda p: self._writer(out).parquet(p))
        else:
            self._pending = out

    def commit(self) -> None:
        """Writes that cannot be staged: Spark's commit protocol makes each one appear at
        the end of its job (new files for append; the replaced partitions for
        overwrite-partitions)."""
        out, self._pending = self._pending, None
        if out is None:
            return
        if self.table:
            self._write_table(out)
            return
        ops = self.outputs.ops
        existed = ops is None or ops.exists(self.path)
        try:
            if self.mode == "append":
                self._writer(out).mode("append").parquet(self.path)
            else:  # overwrite-partitions: only the partitions present in `out` are replaced
                self._writer(out).mode("overwrite").option(
                    "partitionOverwriteMode", "dynamic"
                ).parquet(self.path)
        except BaseException:
            # a failed write's job is aborted (its files removed), but the directory it
            # created for a new data set stays: remove it when it holds nothing else
            if not existed and ops.exists(self.path):
                leftover = [n for n, _ in ops.list(self.path) if not n.startswith((".", "_"))]
                if not leftover:
                    ops.delete(self.path)
            raise

    def _write_table(self, out) -> None:
        exists = self.spark.catalog.tableExists(self.table)
        if self.mode == "overwrite-partitions" and exists:
            self._overwrite_table_partitions(out)
            return
        mode = {"overwrite-partitions": "error"}.get(self.mode, self.mode)
        self._writer(out).mode(mode).saveAsTable(self.table)

    def _overwrite_table_partitions(self, out) -> None:
        """Replace the partitions of ``out`` only.  Tables of a v2 catalog (Delta, Iceberg)
        do it per write (``overwritePartitions``).  A Spark file-source table (v1) cannot:
        ``insertInto`` would replace the whole table unless the session were changed, so
        its location is written with the per-write ``partitionOverwriteMode=dynamic``
        option and the catalog told about new partitions."""
        from pyspark.errors import AnalysisException

        columns = [c for c in self.spark.catalog.listColumns(self.table)]
        missing = [c.name for c in columns if c.name not in out.columns]
        if missing:
            raise DataError(
                f"--output-table {self.table} has column {missing[0]!r}, which the scored rows lack"
            )
        parts = [c.name for c in columns if c.isPartition]
        if self.partition_by and self.partition_by != parts:
            raise UsageError(
                f"--partition-by {','.join(self.partition_by)} but table "
                f"{self.table} is partitioned by {','.join(parts) or 'nothing'}"
            )
        rows = out.select(*[c.name for c in columns])
        try:
            rows.writeTo(self.table).overwritePartitions()
            return
        except AnalysisException as exc:
            if "v1 table" not in str(exc):
                raise
        info = {
            r["col_name"]: r["data_type"]
            for r in self.spark.sql(f"DESCRIBE TABLE EXTENDED {self.table}").collect()
        }
        provider, location = info.get("Provider"), info.get("Location")
        if not location or provider in (None, "hive"):
            raise UsageError(
                f"--output-table {self.table}: overwrite-partitions needs a "
                "Delta/Iceberg table or a Spark file-source table with a location"
            )
        rows.write.mode("overwrite").option("partitionOverwriteMode", "dynamic").partitionBy(
            *parts
        ).format(provider).save(location)
        self.spark.catalog.recoverPartitions(self.table)
        self.spark.catalog.refreshTable(self.table)
