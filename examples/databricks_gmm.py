# Databricks notebook source
# MAGIC %md
# MAGIC # Gaussian mixtures on Databricks with spark-em
# MAGIC
# MAGIC Fits Gaussian mixture models by EM on a table, picks the number of components by BIC,
# MAGIC writes the predictions to a table, saves the model and plots the result.
# MAGIC Works on classic clusters and on serverless / shared (Spark Connect) compute alike.
# MAGIC
# MAGIC **Install.** Build the wheel on your machine (`bash scripts/package.sh` writes
# MAGIC `dist/spark_em-0.1.0-py3-none-any.whl`), upload it to a Unity Catalog volume, and point
# MAGIC the `%pip install` cell below at it.  `%pip` installs it for this notebook on the driver
# MAGIC and the executors.  `--no-deps`: the runtime already has numpy, scipy, pyarrow, pandas
# MAGIC and matplotlib, and its own Spark — pip must not install the open-source `pyspark`
# MAGIC package over it.

# COMMAND ----------

# MAGIC %pip install --no-deps /Volumes/main/default/libs/spark_em-0.1.0-py3-none-any.whl

# COMMAND ----------

# Parameters: change these to your tables and paths.
INPUT_TABLE = "main.default.spark_em_demo_points"   # numeric feature columns
FEATURE_COLUMNS = ["x", "y"]
OUTPUT_TABLE = "main.default.spark_em_demo_predictions"
MODEL_PATH = "/Volumes/main/default/models/spark_em_demo_gmm"
K_CANDIDATES = [2, 3, 4, 5]
COVARIANCE_TYPE = "full"
SEED = 42

# COMMAND ----------

# MAGIC %md
# MAGIC ## Demo data
# MAGIC Creates `INPUT_TABLE` with points from three Gaussian components if it does not exist yet.
# MAGIC Skip this cell for your own data.

# COMMAND ----------

from spark_em.data.datasets import sample_mixture

if not spark.catalog.tableExists(INPUT_TABLE):
    X_demo, _, _ = sample_mixture(3000, k=3, d=2, seed=SEED, separation=6.0)
    demo = spark.createDataFrame([(float(a), float(b)) for a, b in X_demo], "x double, y double")
    demo.write.saveAsTable(INPUT_TABLE)

points = spark.table(INPUT_TABLE)
display(points.limit(10))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Choose k by BIC
# MAGIC One fit per candidate k; the lowest Bayesian information criterion wins.

# COMMAND ----------

from spark_em import GaussianMixture

fits = {}
for k in K_CANDIDATES:
    gm = GaussianMixture(k=k, covarianceType=COVARIANCE_TYPE, featuresCol=FEATURE_COLUMNS,
                         seed=SEED, tol=1e-4, maxIter=200)
    model = gm.fit(points)
    fits[k] = (model, model.bic(points))
    print(f"k={k}: BIC {fits[k][1]:,.1f}  iterations {model.summary.numIter}  "
          f"converged {model.summary.converged}")

bics = {k: bic for k, (_, bic) in fits.items()}
best_k = min(bics, key=bics.get)
best = fits[best_k][0]
print(f"best k by BIC: {best_k}")
display(spark.createDataFrame([(k, float(b)) for k, b in bics.items()], "k int, bic double"))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Score the table and save the model

# COMMAND ----------

from pyspark.ml.functions import vector_to_array

predictions = best.transform(points).withColumn("probability", vector_to_array("probability"))
predictions.write.mode("overwrite").saveAsTable(OUTPUT_TABLE)
best.write().overwrite().save(MODEL_PATH)
display(spark.table(OUTPUT_TABLE).groupBy("prediction").count().orderBy("prediction"))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Plot
# MAGIC A sample of the scored points coloured by component, each component's 2-sigma ellipse
# MAGIC (first two features), and BIC against k.

# COMMAND ----------

import numpy as np

try:
    import matplotlib.pyplot as plt
    from matplotlib.patches import Ellipse
except ImportError:  # pip install "spark-em[plots]"
    plt = None
    print("matplotlib is not installed: no plots")

if plt is not None:
    sample = (spark.table(OUTPUT_TABLE).select(*FEATURE_COLUMNS[:2], "prediction")
              .limit(2000).toPandas())
    fig, (ax, ax_bic) = plt.subplots(1, 2, figsize=(12, 5))
    ax.scatter(sample[FEATURE_COLUMNS[0]], sample[FEATURE_COLUMNS[1]], c=sample["prediction"],
               s=4, cmap="tab10", vmin=0, vmax=9)
    for j, (mean, cov) in enumerate(zip(best.means, best.full_covariances())):
        values, vectors = np.linalg.eigh(cov[:2, :2])
        angle = np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1]))
        width, height = 4 * np.sqrt(values[::-1])
        ax.add_patch(Ellipse(mean[:2], width, height, angle=angle, fill=False,
                             color=plt.cm.tab10(j), lw=2))
    ax.set_xlabel(FEATURE_COLUMNS[0])
    ax.set_ylabel(FEATURE_COLUMNS[1])
    ax.set_title(f"{best_k} components ({COVARIANCE_TYPE} covariance)")
    ax_bic.plot(list(bics), list(bics.values()), marker="o")
    ax_bic.set_xlabel("k")
    ax_bic.set_ylabel("BIC")
    ax_bic.set_title("model selection")
    display(fig)
