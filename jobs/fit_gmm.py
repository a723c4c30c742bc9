"""Fit a Gaussian mixture with spark-em: a thin spark-submit entry point.

    python jobs/fit_gmm.py --demo                          # embedded local Spark, demo data
    spark-submit --master spark://host:7077 --py-files dist/spark_em-0.1.0.zip \
        jobs/fit_gmm.py --input data.parquet --k 5 --model-out /models/gmm
    python jobs/fit_gmm.py --remote sc://host:15002 --input data.parquet --k 5

Settings come from a TOML file (``--conf``, sections [fit], [input], [demo]) and are
overridden by flags.  Outputs (model, predictions) are written to a temporary path and then
renamed, so a failed run leaves nothing half-written.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

FIT_KEYS = ("k", "covarianceType", "maxIter", "tol", "regCovar", "initMode", "nInit", "seed")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conf", help="TOML settings file")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--input", help="Parquet path (any URI Spark reads)")
    src.add_argument("--demo", action="store_true", help="generate demo data and fit it")
    p.add_argument("--features", help="features column, or comma-separated numeric columns")
    p.add_argument("--weight-col")
    p.add_argument("--k", type=int)
    p.add_argument("--covariance-type", dest="covarianceType",
                   choices=["full", "tied", "diag", "spherical"])
    p.add_argument("--max-iter", dest="maxIter", type=int)
    p.add_argument("--tol", type=float)
    p.add_argument("--reg-covar", dest="regCovar", type=float)
    p.add_argument("--init-mode", dest="initMode",
                   choices=["kmeans", "k-means++", "random", "random_from_data"])
    p.add_argument("--n-init", dest="nInit", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--model-out", help="save the fitted model here")
    p.add_argument("--predictions-out", help="write input + prediction/probability as Parquet")
    p.add_argument("--master", help="Spark master when no session exists (default: local[*], "
                   "or spark-submit's --master when run by spark-submit)")
    p.add_argument("--remote", help="Spark Connect URL, e.g. sc://host:15002 (instead of --master)")
    p.add_argument("--quiet", action="store_true", help="no per-iteration progress lines")
    return p.parse_args(argv)


def load_settings(args: argparse.Namespace) -> dict:
    conf = {}
    if args.conf:
        with open(args.conf, "rb") as fh:
            conf = tomllib.load(fh)
    fit = dict(conf.get("fit", {}))
    for key in FIT_KEYS:
        value = getattr(args, key, None)
        if value is not None:
            fit[key] = value
    features = args.features or conf.get("input", {}).get("featuresCol", "features")
    if isinstance(features, str) and "," in features:
        features = [c.strip() for c in features.split(",") if c.strip()]
    weight = args.weight_col or conf.get("input", {}).get("weightCol")
    return {"fit": fit, "features": features, "weight": weight, "demo": conf.get("demo", {})}


def demo_frame(spark, settings: dict, seed: int):
    from spark_em.datasets import sample_mixture, to_dataframe, write_parquet
    from spark_em.env import SparkEnv

    rows = int(settings["demo"].get("rows", 20000))
    dim = int(settings["demo"].get("dim", 2))
    k = int(settings["fit"].get("k", 3))
    X, _, truth = sample_mixture(rows, k=k, d=dim, seed=seed)
    print("true weights:", ", ".join(f"{w:.3f}" for w in truth["weights"]))
    if not SparkEnv.of(spark).local_master:
        # a local temporary file is not visible to a remote server or other machines
        print(f"demo data: {rows} rows, d={dim}, k={k} components (in memory)")
        return to_dataframe(spark, X), "features"
    tmpdir = tempfile.mkdtemp(prefix="spark-em-demo-")
    atexit.register(shutil.rmtree, tmpdir, True)  # demo data live only as long as the job
    path = os.path.join(tmpdir, "demo.parquet")
    write_parquet(X, path)
    print(f"demo data: {rows} rows, d={dim}, k={k} components -> {path}")
    return spark.read.parquet(path), "features"


def print_model(model) -> None:
    s = model.summary
    print(f"\nGaussianMixtureModel: k={model.getK()}, d={model.numFeatures}, "
          f"covarianceType={model.covarianceType}")
    print(f"iterations: {s.numIter}, converged: {s.converged}, "
          f"log-likelihood: {s.logLikelihood:.4f} (mean per row {s.logLikelihood / s.weightSum:.6f})")
    for j in range(model.getK()):
        mean = ", ".join(f"{v:.4f}" for v in model.means[j])
        print(f"  component {j}: weight {model.weights[j]:.4f}, size {s.clusterSizes[j]}, mean [{mean}]")
        cov = model.full_covariances()[j]
        for row in cov:
            print("      cov  [" + ", ".join(f"{v:9.4f}" for v in row) + "]")


def get_session(args: argparse.Namespace):
    """The active session, a Spark Connect session (--remote), the cluster spark-submit
    configured, or an embedded local one."""
    from pyspark.sql import SparkSession

    from spark_em.session import local_session

    if args.remote:
        return SparkSession.builder.remote(args.remote).appName("spark-em fit_gmm").getOrCreate()
    spark = SparkSession.getActiveSession()
    if spark is not None:
        return spark
    if args.master is None and "PYSPARK_GATEWAY_PORT" in os.environ:
        # launched by spark-submit: its --master / --conf already configure the session
        return SparkSession.builder.appName("spark-em fit_gmm").getOrCreate()
    spark = local_session(args.master or "local[*]", "spark-em fit_gmm")
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def main(argv=None) -> int:
    args = parse_args(argv)
    settings = load_settings(args)
    from spark_em import GaussianMixture
    from spark_em.fs import atomic_write
    from spark_em.progress import IterationInfo

    spark = get_session(args)
    if args.demo or not args.input:
        df, features = demo_frame(spark, settings, int(settings["fit"].get("seed", 0) or 0))
    else:
        df, features = spark.read.parquet(args.input), settings["features"]
    gm = GaussianMixture(featuresCol=features, **settings["fit"])
    if settings["weight"]:
        gm.setWeightCol(settings["weight"])
    if not args.quiet:
        gm.progress = lambda info: isinstance(info, IterationInfo) and print(
            f"iteration {info.iteration:3d}  mean log-likelihood {info.mean_log_likelihood:.6f}"
            f"  change {info.change:.3e}  {info.seconds:.2f}s", flush=True)
    model = gm.fit(df)
    print_model(model)
    if args.model_out:
        model.write().overwrite().save(args.model_out)
        print(f"model saved to {args.model_out}")
    if args.predictions_out:
        out = model.transform(df)
        atomic_write(spark, args.predictions_out, True, lambda p: out.write.parquet(p))
        print(f"predictions written to {args.predictions_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
