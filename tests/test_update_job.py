"""``spark-em fit --segment-col`` then ``spark-em update`` on a Hive-partitioned lake: only
the new partitions are read, the report says what was done, a night with nothing new keeps
the chain going, and a drifted night exits 4 writing only the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from spark_em import GaussianMixtureModel
from spark_em.cli.main import run

N = 150


def write_day(root: Path, day: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(day)
    z = rng.random(N) < 0.5
    X = np.where(z[:, None], rng.normal(-2.0, 0.6, (N, 2)), rng.normal(2.0, 0.8, (N, 2))) + shift
    folder = root / f"day={day}"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"f1": X[:, 0], "f2": X[:, 1]}), str(folder / "part-00000.parquet"))
    return X


@pytest.fixture(scope="module")
def chain(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("lake") / "features"
    for day in (1, 2, 3):
        write_day(root, day)
    models = tmp_path_factory.mktemp("models")
    argv = ["--input", str(root), "--features", "f1,f2", "--k", "2", "--segment-col", "day"]
    assert run("fit", argv + ["--quiet", "--model-out", str(models / "m0")]) == 0
    return root, models


def update(root, models, src, out, *extra):
    report = models / f"{out}.json"
    code = run(
        "update",
        ["--input", str(root), "--features", "f1,f2", "--model", str(models / src)]
        + ["--model-out", str(models / out), "--report-out", str(report), "--quiet", *extra],
    )
    return code, json.loads(report.read_text())


def test_update_reads_only_new_partitions_and_refreshes_the_stalest(spark, chain, monkeypatch):
    root, models = chain
    m0 = GaussianMixtureModel.load(str(models / "m0"))
    assert [s.key for s in m0.segments] == [1, 2, 3] and m0.getSegmentCol() == "day"
    X4 = write_day(root, 4)
    # local block files keep the days apart: the new day is scored by the update's own
    # first E-step, no scoring pass of its own
    with monkeypatch.context() as patched:
        patched.setattr(GaussianMixtureModel, "score", lambda *a: pytest.fail("scored again"))
        code, report = update(root, models, "m0", "m1", "--window", "3")
    assert code == 0, report
    assert report["keys_from"] == "partition paths"
    # the drift signal: day 4's mean log-likelihood under m0 (the update's first E-step)
    logp = np.stack(
        [
            np.log(w) + multivariate_normal(mu, cov).logpdf(X4)
            for w, mu, cov in zip(m0.weights, m0.means, m0.covariances)
        ],
        axis=1,
    )
    expected = float(logsumexp(logp, axis=1).mean())
    assert report["drift"]["new_mean_log_likelihood"] == pytest.approx(expected, rel=1e-9)
    assert report["rows_read"] == N and report["segments_updated"] == ["4"]
    assert report["segments_dropped"] == ["1"] and report["segments_frozen"] == ["2", "3"]
    m1 = GaussianMixtureModel.load(str(models / "m1"))
    assert [s.key for s in m1.segments] == [2, 3, 4]
    # --refresh 1: the stalest stored segment (2, of the fit's iteration) is read again
    write_day(root, 5)
    code, report = update(root, models, "m1", "m2", "--window", "3", "--refresh", "1")
    assert code == 0, report
    assert report["segments_new"] == ["5"] and report["segments_refreshed"] == ["3"]
    assert report["rows_read"] == 2 * N


def test_nothing_new_keeps_the_model(spark, chain):
    """After the test above: m2 holds days 3, 4, 5, the newest three of the lake."""
    root, models = chain
    code, report = update(root, models, "m2", "m3", "--window", "3")
    assert code == 0 and report["status"] == "nothing new" and report["rows_read"] == 0
    a = GaussianMixtureModel.load(str(models / "m2"))
    b = GaussianMixtureModel.load(str(models / "m3"))
    np.testing.assert_array_equal(a.means, b.means)
    assert a.segments == b.segments


def test_align_to_reorders_the_components_and_their_segments(spark, chain):
    """--align-to a model whose components are m2's in reverse order: the written model is
    m2's mixture reversed, its segments' statistics reordered with it (it loads: the
    parameters are the M-step of their sum), and the report gives the order."""
    root, models = chain
    m2 = GaussianMixtureModel.load(str(models / "m2"))
    reference = GaussianMixtureModel.fromParameters(
        m2.weights[::-1], m2.means[::-1], m2.covariances[::-1]
    )
    reference.write().save(str(models / "reversed"))
    code, report = update(
        root, models, "m2", "aligned", "--window", "3", "--align-to", str(models / "reversed")
    )
    assert code == 0, report
    assert report["aligned_to"] == {"model": str(models / "reversed"), "order": [1, 0]}
    aligned = GaussianMixtureModel.load(str(models / "aligned"))
    np.testing.assert_allclose(aligned.means, m2.means[::-1], rtol=1e-12)
    np.testing.assert_allclose(aligned.weights, m2.weights[::-1], rtol=1e-12)
    assert [(a.key, a.rows) for a in aligned.segments] == [(b.key, b.rows) for b in m2.segments]
    # the next night (nothing new) is the M-step of the stored statistics: the same order
    code, report = update(root, models, "aligned", "aligned-next", "--window", "3")
    assert code == 0 and report["status"] == "nothing new"
    nxt = GaussianMixtureModel.load(str(models / "aligned-next"))
    np.testing.assert_allclose(nxt.means, aligned.means, rtol=1e-9)


def test_drift_exits_4_and_writes_only_the_report(spark, chain):
    root, models = chain
    write_day(root, 9, shift=25.0)
    code, report = update(root, models, "m0", "drifted", "--max-drift", "1.0")
    assert code == 4
    assert report["status"].startswith("refused: drift")
    assert report["drift"]["nats_per_row_below_window"] > 1.0
    assert not (models / "drifted").exists()


def test_partition_values_spark_escaped_and_an_empty_partition(spark, tmp_path):
    """String segments whose partition directories Spark escapes (``a:b`` is ``seg=a%3Ab``:
    the rows say which they are), and a new partition whose file holds no row: the job
    reads the right segments and ends where an update that asks the rows ends."""
    rng = np.random.default_rng(11)
    root = tmp_path / "lake"

    def write(segs):
        rows = []
        for seg in segs:
            X = np.concatenate([rng.normal(-2, 0.6, (60, 2)), rng.normal(2, 0.8, (60, 2))])
            rows += [(float(a), float(b), seg) for a, b in X]
        df = spark.createDataFrame(rows, "f1 double, f2 double, seg string")
        df.write.mode("append").partitionBy("seg").parquet(str(root))

    write(["a:b", "x%y"])
    argv = ["--input", str(root), "--features", "f1,f2", "--k", "2", "--segment-col", "seg"]
    assert run("fit", argv + ["--quiet", "--seed", "1", "--model-out", str(tmp_path / "m0")]) == 0
    write(["p q", "é#1"])
    empty = root / "seg=zz"
    empty.mkdir()
    schema = pa.schema([("f1", pa.float64()), ("f2", pa.float64())])
    pq.write_table(schema.empty_table(), str(empty / "part-00000.parquet"))
    code, report = update(root, tmp_path, "m0", "m1", "--window", "10")
    assert code == 0, report
    assert report["keys_from"] == "rows" and report["rows_read"] == 240
    assert report["segments_new"] == ["p q", "é#1"]
    assert report["segments_updated"] == ["p q", "é#1"]
    m0 = GaussianMixtureModel.load(str(tmp_path / "m0"))
    m1 = GaussianMixtureModel.load(str(tmp_path / "m1"))
    assert [s.key for s in m1.segments] == ["a:b", "p q", "x%y", "é#1"]
    new = spark.read.parquet(str(root)).where("seg in ('p q', 'é#1')")
    expected = m0.setFeaturesCol(["f1", "f2"]).update(new, window=10)
    np.testing.assert_allclose(m1.means, expected.means, rtol=1e-12, atol=1e-12)


def test_an_empty_new_partition_among_the_keys_handed_to_the_update(spark, tmp_path):
    """Keys from the partition paths include a day whose file holds no row: the update is
    told all of them, finds that day empty, and ends as the rows say (the other new day
    updated, the stored ones frozen), equal to the API's update of the new rows."""
    root = tmp_path / "lake"
    for day in (1, 2):
        write_day(root, day)
    argv = ["--input", str(root), "--features", "f1,f2", "--k", "2", "--segment-col", "day"]
    assert run("fit", argv + ["--quiet", "--seed", "1", "--model-out", str(tmp_path / "m0")]) == 0
    write_day(root, 3)
    (root / "day=4").mkdir()
    schema = pa.schema([("f1", pa.float64()), ("f2", pa.float64())])
    pq.write_table(schema.empty_table(), str(root / "day=4" / "part-00000.parquet"))
    code, report = update(root, tmp_path, "m0", "m1", "--window", "3")
    assert code == 0, report
    assert report["keys_from"] == "partition paths" and report["segments_new"] == ["3", "4"]
    assert report["segments_updated"] == ["3"] and report["rows_read"] == N
    assert report["segments_frozen"] == ["1", "2"] and report["segments_dropped"] == []
    m0 = GaussianMixtureModel.load(str(tmp_path / "m0"))
    m1 = GaussianMixtureModel.load(str(tmp_path / "m1"))
    assert [s.key for s in m1.segments] == [1, 2, 3]
    expected = m0.update(spark.read.parquet(str(root)).where("day = 3"), window=3)
    np.testing.assert_allclose(m1.means, expected.means, rtol=1e-12, atol=1e-12)
