"""A first pass reads its input without Spark's per-row Arrow size check only where that
check cannot end a batch (spark_em.data.stores.arrow_batches): the bound of a row's bytes
against pyarrow's own sizes, the same batches as the user's session sends, the user's
settings kept (in the clone) and unchanged (in the session), and a fit through the clone
against scikit-learn."""

from __future__ import annotations

import contextlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F
from sklearn.mixture import GaussianMixture as SkGM

from spark_em import GaussianMixture
from spark_em.data import passes
from spark_em.data.stores import arrow_batches, base
from spark_em.data.stores.arrow_batches import (
    MAX_BYTES_PER_BATCH,
    NO_BYTE_LIMIT,
    _runs_python,
    first_pass_row_bytes,
    row_bytes,
    without_size_check,
)

MAX_RECORDS = "spark.sql.execution.arrow.maxRecordsPerBatch"


def _read_as(frame, bytes_per_row):
    """The frame the first pass would read for ``frame`` (within the block, and left)."""
    with without_size_check(frame, bytes_per_row) as read:
        return read


@pytest.mark.parametrize("d", [1, 3, 16, 100])
@pytest.mark.parametrize("weighted", [False, True])
def test_row_bytes_bounds_the_arrow_bytes_of_a_row(d, weighted):
    # a batch as Spark sends it: x list<double> (some nulls, as Spark's writer keeps
    # validity buffers), w double; pyarrow's buffer sizes are the layout's own
    n = 10_000
    rng = np.random.default_rng(d)
    x = pa.ListArray.from_arrays(
        pa.array(np.arange(n + 1, dtype=np.int32) * d),
        pa.array(rng.normal(size=n * d), mask=rng.random(n * d) < 0.01),
    )
    cols = {"x": x}
    if weighted:
        cols["w"] = pa.array(rng.random(n))
    batch = pa.RecordBatch.from_pydict(cols)
    assert batch.get_total_buffer_size() <= n * row_bytes(d, weighted, False)
    # and not loose by more than the constant per row
    assert n * row_bytes(d, weighted, False) - batch.get_total_buffer_size() < n * (d + 64)


def test_no_bound_where_the_check_may_be_needed():
    assert row_bytes(None, False, False) is None  # d found by the tasks
    assert row_bytes(16, True, True) is None  # a segment key: a string of any length
    assert first_pass_row_bytes(False, 2, 16, True, False, False) == row_bytes(16, False, False)
    assert first_pass_row_bytes(False, 2, 16, False, False, False) is None  # d a guess
    assert first_pass_row_bytes(True, 2, 16, True, False, False) is None  # Spark Connect
    # 2 tasks per core: above 16 cores a reduce level runs over the statistics rows
    assert first_pass_row_bytes(False, 16, 16, True, False, False) is not None
    assert first_pass_row_bytes(False, 17, 16, True, False, False) is None


def _session_conf(frame, key):
    return frame._jdf.sparkSession().conf().get(key)


def _batch_rows(frame):
    """The row counts of the Arrow batches a mapInArrow task receives, per task."""

    def sizes(batches):
        yield pa.RecordBatch.from_pydict({"n": [[b.num_rows for b in batches]]})

    rows = frame.mapInArrow(sizes, "n array<long>").collect()
    return sorted(tuple(r["n"]) for r in rows)


def _byte_limit(frame) -> int:
    """The byte limit, in bytes, of the session ``frame`` runs in."""
    return int(frame._jdf.sparkSession().sessionState().conf().arrowMaxBytesPerBatch())


def _task_limits(frame):
    """The Arrow byte limit the tasks of a pass over ``frame`` ran under."""

    def limit(batches):
        from pyspark import TaskContext

        for _ in batches:
            pass
        value = TaskContext.get().getLocalProperty(MAX_BYTES_PER_BATCH)
        yield pa.RecordBatch.from_pydict({"v": [value]})

    return {r["v"] for r in frame.mapInArrow(limit, "v string").collect()}


@pytest.fixture
def user_arrow_settings(spark):
    """The user's own Arrow batch settings for one test (restored after it)."""
    old = {k: spark.conf.get(k, None) for k in (MAX_RECORDS, MAX_BYTES_PER_BATCH)}

    def set_(**values):
        for key, value in values.items():
            spark.conf.set(key, value)

    yield set_
    for key, value in old.items():
        if value is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, value)


def _rows(spark, d, weighted, n=100):
    """``n`` rows of d deterministic features (and a weight) in 2 partitions, from a plan
    Spark shows whole (no RDD: ``createDataFrame`` of a list would be one)."""
    ids = spark.range(0, n, 1, 2)
    x = F.array(*[((F.col("id") * (j + 3)) % 11 - 5).cast("double") for j in range(d)])
    cols = [x.alias("x")] + ([(F.col("id") / n).alias("w")] if weighted else [])
    return ids.select(*cols)


@pytest.mark.parametrize("d", [1, 4, 40])
@pytest.mark.parametrize("weighted", [False, True])
def test_same_batches_as_the_users_session_at_a_byte_limit_just_above_the_bound(
    spark, user_arrow_settings, d, weighted
):
    # 7 rows of the bound just fit below the user's byte limit: if a row took more bytes
    # than the bound, the user's session would end its batches before 7 rows, the clone not
    bound = row_bytes(d, weighted, False)
    user_arrow_settings(**{MAX_RECORDS: "7", MAX_BYTES_PER_BATCH: str(7 * bound + 1)})
    before = dict(spark.conf.getAll)
    frame = _rows(spark, d, weighted)
    with without_size_check(frame, bound) as fast:
        assert fast is not frame
        assert _session_conf(fast, MAX_BYTES_PER_BATCH) == str(NO_BYTE_LIMIT)
        assert _session_conf(fast, MAX_RECORDS) == "7"  # the user's settings, cloned
        batches = _batch_rows(fast)
        assert batches == _batch_rows(frame)
        assert _task_limits(fast) == {str(NO_BYTE_LIMIT)}  # what the tasks ran with
        assert _task_limits(frame) == {str(7 * bound + 1)}
        assert all(n <= 7 for task in batches for n in task) and sum(map(sum, batches)) == 100
        assert max(n for task in batches for n in task) == 7
        assert sorted(fast.collect()) == sorted(frame.collect())
        assert dict(spark.conf.getAll) == before
    # left: the clone's later queries have the user's byte limit again
    assert _session_conf(fast, MAX_BYTES_PER_BATCH) == str(7 * bound + 1)
    assert dict(spark.conf.getAll) == before


def test_the_clone_gets_the_users_limit_back_when_the_pass_fails(spark, user_arrow_settings):
    user_arrow_settings(**{MAX_RECORDS: "7", MAX_BYTES_PER_BATCH: "1m"})
    frame = _rows(spark, 4, False)
    with pytest.raises(ZeroDivisionError):
        with without_size_check(frame, row_bytes(4, False, False)) as fast:
            assert _byte_limit(fast) == NO_BYTE_LIMIT
            _ = 1 / 0
    assert _byte_limit(fast) == _byte_limit(frame) == 1 << 20


def test_a_failing_restore_never_replaces_the_pass_error(spark, user_arrow_settings, monkeypatch):
    user_arrow_settings(**{MAX_RECORDS: "7", MAX_BYTES_PER_BATCH: "1m"})
    frame = _rows(spark, 4, False)
    with pytest.raises(ZeroDivisionError):
        with without_size_check(frame, row_bytes(4, False, False)) as fast:
            assert fast is not frame
            # the restore now sets a static setting, which Spark refuses with an error
            monkeypatch.setattr(arrow_batches, "MAX_BYTES_PER_BATCH", "spark.sql.warehouse.dir")
            _ = 1 / 0


def test_a_smaller_byte_limit_ends_batches_before_the_record_limit(spark, user_arrow_settings):
    # the test above can fail: where 3 rows' values alone reach the byte limit, the user's
    # session ends the batches before 7 rows
    user_arrow_settings(**{MAX_RECORDS: "7", MAX_BYTES_PER_BATCH: str(3 * 8 * 4)})
    frame = _rows(spark, 4, False)
    assert _read_as(frame, row_bytes(4, False, False)) is frame
    assert max(n for task in _batch_rows(frame) for n in task) <= 3


def test_the_check_stays_where_a_batch_could_reach_the_limit(spark, user_arrow_settings):
    frame = spark.range(10).select(F.array(F.col("id").cast("double")).alias("x"))
    # 10,000 rows of 10,000 features: 720 MB, above 64 MiB
    assert _read_as(frame, row_bytes(10_000, False, False)) is frame
    assert _read_as(frame, None) is frame
    # the user's own limits: 10,000 rows of 16 features are above 100 kB
    user_arrow_settings(**{MAX_BYTES_PER_BATCH: "100k"})
    assert _read_as(frame, row_bytes(16, False, False)) is frame
    # a record limit of 0 (none): only the bytes end a batch
    user_arrow_settings(**{MAX_BYTES_PER_BATCH: "64m", MAX_RECORDS: "0"})
    assert _read_as(frame, row_bytes(16, False, False)) is frame


def test_the_check_stays_for_python_or_an_rdd_in_the_input(spark):
    """A Python operator in the input's plan reads batches under the same byte limit: the
    clone would lift it for that operator too -- also in the plan of a cache the input
    reads (a cache refills missing partitions in the same job), and in an RDD's lineage,
    which the plan does not show."""
    frame = _rows(spark, 1, False)
    bound = row_bytes(1, False, False)
    assert _read_as(frame, bound) is not frame

    @F.pandas_udf("double")
    def plus(v):
        return v + 1.0

    udf = spark.range(10).select(F.array(plus(F.col("id").cast("double"))).alias("x"))
    mapped = frame.mapInArrow(lambda it: it, frame.schema)
    rdd = spark.createDataFrame([([1.0],), ([2.0],)], "x array<double>")
    for python in (udf, mapped, rdd):
        assert _runs_python(python) is True
        assert _read_as(python, bound) is python
    for plan in (mapped, frame):
        plan.cache()
    try:
        for plan in (mapped, frame):
            plan.count()
        later = mapped.select("x")  # a plan made after the cache: the cache's scan
        assert _runs_python(later) is True
        assert _read_as(later, bound) is later
        later = frame.select("x")  # a cache of a plan without Python
        assert _runs_python(later) is False
        assert _read_as(later, bound) is not later
    finally:
        for plan in (mapped, frame):
            plan.unpersist(blocking=True)


@pytest.mark.parametrize("store", ["local", "spark"])
def test_a_fit_through_the_clone_keeps_the_users_settings(spark, tmp_path, monkeypatch, store):
    """Feature columns (d known): the first pass reads a filtered Parquet input through
    the clone.  One of its files is corrupt and the user's session skips corrupt files,
    so the fit sees the good file's rows -- as scikit-learn fitted on them."""
    rng = np.random.default_rng(5)
    X = np.concatenate([rng.normal(c, 0.5, size=(150, 2)) for c in (-4.0, 0.0, 4.0)])
    path = tmp_path / "input"
    path.mkdir()
    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1]}), str(path / "part-0.parquet"))
    (path / "part-1.parquet").write_bytes(b"PAR1 not a parquet file at all PAR1")
    cloned = []  # whether each first pass read its input through a clone

    frames = []

    @contextlib.contextmanager
    def spy(frame, bytes_per_row):
        with without_size_check(frame, bytes_per_row) as read:
            cloned.append(read is not frame)
            frames.append(read)
            yield read

    monkeypatch.setattr(base, "without_size_check", spy)
    limits = []  # the byte limit of the session the first pass's job ran in
    collect = passes.tree_collect

    def first_collect(rows, *args, **kwargs):
        if not limits:
            limits.append(_byte_limit(rows))
        return collect(rows, *args, **kwargs)

    monkeypatch.setattr(passes, "tree_collect", first_collect)
    user_limit = spark.conf.get(MAX_BYTES_PER_BATCH)
    key = "spark.sql.files.ignoreCorruptFiles"
    old = spark.conf.get(key, None)
    spark.conf.set(key, "true")
    try:
        df = spark.read.schema("a double, b double").parquet(str(path)).where("a > -100")
        model = GaussianMixture(
            k=3, maxIter=200, tol=1e-8, seed=1, blockCache=store, featuresCol=["a", "b"]
        ).fit(df)
        assert spark.conf.get(key) == "true"
        assert spark.conf.get(MAX_BYTES_PER_BATCH) != str(NO_BYTE_LIMIT)
    finally:
        if old is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, old)
    assert cloned == [True]
    assert limits == [NO_BYTE_LIMIT]  # the first pass's job ran inside the block, in the clone
    # the clone has the user's limit back after the first pass
    assert _byte_limit(frames[0]) == _byte_limit(spark.range(1)) < NO_BYTE_LIMIT
    assert spark.conf.get(MAX_BYTES_PER_BATCH) == user_limit
    assert model.summary.numRows == X.shape[0]
    sk = SkGM(3, tol=1e-10, max_iter=500, n_init=5, random_state=0).fit(X)
    order, sk_order = np.argsort(model.means[:, 0]), np.argsort(sk.means_[:, 0])
    np.testing.assert_allclose(model.means[order], sk.means_[sk_order], atol=1e-4)
    np.testing.assert_allclose(model.weights[order], sk.weights_[sk_order], atol=1e-4)


def test_a_guessed_d_keeps_the_check(spark, monkeypatch):
    """An initial model's d is only a first guess for an array column (rows of another
    length make the fit count them): its first pass keeps Spark's check."""
    cloned = []

    @contextlib.contextmanager
    def spy(frame, bytes_per_row):
        with without_size_check(frame, bytes_per_row) as read:
            cloned.append(read is not frame)
            yield read

    rng = np.random.default_rng(8)
    X = np.concatenate([rng.normal(c, 0.5, size=(100, 2)) for c in (-3.0, 3.0)])
    df = spark.createDataFrame([(row.tolist(),) for row in X], "features array<double>")
    model = GaussianMixture(k=2, seed=1, blockCache="local").fit(df)
    monkeypatch.setattr(base, "without_size_check", spy)
    GaussianMixture(k=2, maxIter=2, initialModel=model, blockCache="local").fit(df)
    assert cloned == [False]
