"""``spark-em select`` in-process on the shared session, and a job killed with SIGKILL that
resumes from its checkpoint and ends with the model of a run that was never killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from spark_em import GaussianMixtureModel
from spark_em.cli.main import run
from spark_em.data.datasets import sample_mixture

from .servers import FAST_JVM, base_env, write_id_features_parquet

SPARK_EM = str(Path(sys.executable).with_name("spark-em"))


@pytest.fixture(scope="module")
def diag_lake(tmp_path_factory):
    X, _, _ = sample_mixture(1500, k=3, d=3, covariance_type="diag", seed=3, separation=6.0)
    path = write_id_features_parquet(tmp_path_factory.mktemp("select") / "x.parquet", X)
    return X, path


def test_select_job_saves_the_best_with_table_report_and_plot(spark, diag_lake, tmp_path, capsys):
    X, path = diag_lake
    out, report, plots = tmp_path / "model", tmp_path / "select.json", tmp_path / "plots"
    code = run(
        "select",
        [
            "--input",
            path,
            "--k",
            "1..5",
            "--covariance-types",
            "full,diag,spherical",
            "--seed",
            "1",
            "--tol",
            "1e-4",
            "--model-out",
            str(out),
            "--report-out",
            str(report),
            "--plot-dir",
            str(plots),
        ],
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "best by BIC: k=3 diag" in captured.out
    assert "[k=2 full] iteration" in captured.err  # every candidate's progress is labelled
    model = GaussianMixtureModel.load(str(out))
    assert (model.getK(), model.covarianceType) == (3, "diag")
    rep = json.loads(report.read_text())
    assert rep["best"] == {"k": 3, "covarianceType": "diag"}
    assert len(rep["candidates"]) == 15
    best = min(rep["candidates"], key=lambda r: r["bic"])
    assert best["bic"] == pytest.approx(model.toSklearn().bic(X), rel=1e-9)
    assert (plots / "bic.png").stat().st_size > 10_000


def _job(args, **kw):
    env = {
        k: v for k, v in base_env().items() if k not in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")
    }
    env["JAVA_TOOL_OPTIONS"] = FAST_JVM
    return subprocess.Popen(
        [SPARK_EM, "fit", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def test_job_killed_with_sigkill_resumes_to_the_same_model(spark, tmp_path):
    X, _, _ = sample_mixture(60_000, k=4, d=6, seed=8, separation=4.0)
    path = write_id_features_parquet(tmp_path / "x.parquet", X)
    ckpt = tmp_path / "ckpt"
    common = [
        "--input",
        path,
        "--k",
        "4",
        "--seed",
        "3",
        "--tol",
        "0",
        "--max-iter",
        "40",
        "--init-mode",
        "random",
    ]
    resumable = common + [
        "--checkpoint-dir",
        str(ckpt),
        "--master",
        "local[1]",
        "--model-out",
        str(tmp_path / "resumed"),
    ]
    proc = _job(resumable, start_new_session=True)  # its own group: python + its JVM
    state = ckpt / "state.json"
    deadline = time.monotonic() + 240
    killed_after = None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if state.exists():
                killed_after = json.loads(state.read_text())["iteration"]
                if killed_after >= 3:
                    os.killpg(proc.pid, signal.SIGKILL)
                    break
            time.sleep(0.05)
    finally:
        if proc.poll() is None and killed_after is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert killed_after is not None and 3 <= killed_after < 40, proc.stderr.read()[-3000:]
    assert not (tmp_path / "resumed").exists()  # nothing half-written
    again = _job(resumable)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-3000:]
    assert "initialisation: checkpoint" in err
    first = int(err.split("] iteration", 1)[1].split()[0])
    assert first > killed_after >= 3

    # the run that was never killed: the same job in-process on the shared local[2] session
    code = run("fit", common + ["--model-out", str(tmp_path / "whole"), "--quiet"])
    assert code == 0
    a = GaussianMixtureModel.load(str(tmp_path / "resumed"))
    b = GaussianMixtureModel.load(str(tmp_path / "whole"))
    assert a.summary.numIter == b.summary.numIter == 40
    for key in ("weights", "means", "covariances"):
        np.testing.assert_allclose(getattr(a, key), getattr(b, key), rtol=1e-9, atol=1e-9)


def test_the_table_shows_means_per_row_and_flags_a_stuck_candidate():
    """A candidate below a smaller k of its covariance type stopped in a local optimum (k+1
    components can always do as well as k): flagged, the mean per row to 6 decimals."""
    import io

    from spark_em.cli.commands.select import mark_stuck, print_table

    def row(k, t, mean):
        return dict(
            k=k,
            covarianceType=t,
            meanLogLikelihood=mean,
            bic=1.0,
            aic=1.0,
            iterations=3,
            converged=True,
            seconds=0.1,
        )

    rows = mark_stuck(
        [
            row(2, "full", -9.8226011),
            row(3, "full", -9.8226014),  # below k=2 by 3e-7: invisible at 6 significant digits
            row(4, "full", -9.5338),
            row(2, "diag", -10.5),
            row(3, "diag", -10.4),
        ]
    )
    assert [r["stuck"] for r in rows] == [False, True, False, False, False]
    out = io.StringIO()
    print_table(rows, {"k": 4, "covarianceType": "full"}, "bic", out)
    lines = out.getvalue().splitlines()
    assert "-9.822601" in lines[1] and "-9.822601" in lines[2] and "stuck" in lines[2]
    assert sum("stuck" in line for line in lines) == 1 and "<- best" in lines[3]
