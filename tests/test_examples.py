"""examples/databricks_gmm.py runs cell by cell on the local session, as Databricks would run
it: ``spark`` and ``display`` are provided, ``%md``/``%pip`` (MAGIC) cells are skipped, and
only the parameters cell's tables, paths and k candidates are changed for the test."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "databricks_gmm.py"
HEADER = "# Databricks notebook source"
SEPARATOR = "\n# COMMAND ----------\n"


def notebook_cells(path: Path) -> list[str]:
    text = path.read_text()
    assert text.startswith(HEADER + "\n"), "not in Databricks source format"
    return [cell.strip("\n") for cell in text[len(HEADER) + 1 :].split(SEPARATOR)]


def is_magic(cell: str) -> bool:
    lines = [line for line in cell.splitlines() if line.strip()]
    return bool(lines) and all(line.startswith("# MAGIC") for line in lines)


def test_notebook_format():
    cells = notebook_cells(NOTEBOOK)
    magic = [c for c in cells if is_magic(c)]
    assert any("%pip install" in c and ".whl" in c for c in magic)
    assert any(c.startswith("# MAGIC %md") for c in magic)
    assert len(cells) - len(magic) >= 4


def test_databricks_notebook_runs_in_order(spark, tmp_path, monkeypatch):
    from sklearn.mixture import GaussianMixture as SkGM

    from spark_em import GaussianMixtureModel

    monkeypatch.setenv("MPLBACKEND", "Agg")
    tag = f"{os.getpid()}"
    overrides = {
        "INPUT_TABLE": f"spark_em_example_points_{tag}",
        "OUTPUT_TABLE": f"spark_em_example_predictions_{tag}",
        "MODEL_PATH": str(tmp_path / "model"),
        "K_CANDIDATES": [2, 3, 4],  # fewer fits than the notebook's default, to keep CI fast
    }
    shown = []
    namespace = {"spark": spark, "display": shown.append, "__name__": "__main__"}
    try:
        for number, cell in enumerate(notebook_cells(NOTEBOOK)):
            if is_magic(cell):
                continue
            exec(compile(cell, f"{NOTEBOOK.name}[cell {number}]", "exec"), namespace)
            if "INPUT_TABLE" in namespace and namespace["INPUT_TABLE"] != overrides["INPUT_TABLE"]:
                namespace.update(overrides)  # right after the parameters cell
        ns = namespace

        # BIC picks the generating number of components (three well-separated blobs)
        assert ns["best_k"] == 3
        assert set(ns["bics"]) == set(ns["K_CANDIDATES"])
        points = spark.table(overrides["INPUT_TABLE"]).toPandas()
        X = points[ns["FEATURE_COLUMNS"]].to_numpy()
        # every BIC agrees with sklearn's formula on the same parameters and rows
        for k, (model, bic) in ns["fits"].items():
            sk = SkGM(n_components=k, covariance_type=model.covarianceType)
            sk.weights_, sk.means_, sk.covariances_ = model.weights, model.means, model.covariances
            sk.precisions_cholesky_ = model.precisionsCholesky
            sk.n_features_in_ = X.shape[1]
            np.testing.assert_allclose(bic, sk.bic(X), rtol=1e-9)

        scored = spark.table(overrides["OUTPUT_TABLE"]).toPandas()
        assert len(scored) == len(points)
        prob = np.stack(scored["probability"].to_numpy())
        np.testing.assert_allclose(prob.sum(axis=1), 1.0, atol=1e-12)
        np.testing.assert_array_equal(scored["prediction"], prob.argmax(axis=1))

        saved = GaussianMixtureModel.load(overrides["MODEL_PATH"])
        np.testing.assert_array_equal(saved.means, ns["best"].means)

        import matplotlib.figure

        assert any(isinstance(obj, matplotlib.figure.Figure) for obj in shown)
    finally:
        for table in (overrides["INPUT_TABLE"], overrides["OUTPUT_TABLE"]):
            spark.sql(f"DROP TABLE IF EXISTS {table}")
