"""The README's Structured Streaming recipe: ``foreachBatch`` makes each micro-batch a
segment (its batch id), fits the first and updates the model with every later one (the
window counted in batches), saving the model per batch.  The result is the chain of
``model.update`` calls on the same batches, run without streaming (to 1e-6: partitions,
hence the order of the sums, differ)."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import functions as F

from spark_em import GaussianMixture, GaussianMixtureModel

BATCHES, WINDOW = 4, 3


def test_foreach_batch_recipe(spark, tmp_path):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    rng = np.random.default_rng(5)
    for b in range(BATCHES):
        X = np.concatenate([rng.normal(-2, 0.5, (60, 2)), rng.normal(2 + 0.2 * b, 0.7, (60, 2))])
        path = str(incoming / f"part-{b}.parquet")
        pq.write_table(pa.table({"f1": X[:, 0], "f2": X[:, 1]}), path)
        # the file source takes files by modification time: distinct ones make file b batch b
        os.utime(path, (1_700_000_000 + 60 * b, 1_700_000_000 + 60 * b))
    models = tmp_path / "models"

    # ---- the recipe (README, "Streaming")
    state = {"model": None}

    def update_model(batch, batch_id):
        if batch.isEmpty():
            return
        batch = batch.withColumn("batch", F.lit(batch_id))
        if state["model"] is None:
            gm = GaussianMixture(k=2, featuresCol=["f1", "f2"], segmentCol="batch")
            model = gm.fit(batch)
        else:
            model = state["model"].update(batch, window=WINDOW)
        model.write().overwrite().save(f"{models}/batch-{batch_id}")
        state["model"] = model

    query = (
        spark.readStream.schema("f1 double, f2 double")
        .option("maxFilesPerTrigger", 1)
        .parquet(str(incoming))
        .writeStream.foreachBatch(update_model)
        .option("checkpointLocation", str(tmp_path / "chk"))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    # ----

    last = GaussianMixtureModel.load(f"{models}/batch-{BATCHES - 1}")
    assert [s.key for s in last.segments] == list(range(BATCHES - WINDOW, BATCHES))
    assert all(s.rows == 120 for s in last.segments)
    # the same chain without streaming, batch by batch (file b is batch b)
    frames = [
        spark.read.parquet(str(incoming / f"part-{b}.parquet")).withColumn("batch", F.lit(b))
        for b in range(BATCHES)
    ]
    model = GaussianMixture(k=2, featuresCol=["f1", "f2"], segmentCol="batch").fit(frames[0])
    for b in range(1, BATCHES):
        model = model.update(frames[b], window=WINDOW)
    np.testing.assert_allclose(last.means, model.means, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(last.covariances, model.covariances, rtol=1e-6, atol=1e-8)
