"""The ``spark-em`` console script's settings: TOML file + flags, rejected before Spark starts.

Each case runs the installed console script in a fresh process with ``JAVA_HOME`` pointing
nowhere and no ``java`` on ``PATH``: had the job tried to start Spark it would fail with
Spark's own launcher error, so getting the job's one-line message proves it did not.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

SPARK_EM = str(Path(sys.executable).with_name("spark-em"))
ROOT = Path(__file__).resolve().parents[1]


def spark_em(*args, cwd=None, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI",)}
    env["JAVA_HOME"] = "/nonexistent-java-home"
    env["PATH"] = os.path.dirname(sys.executable) + ":/usr/bin/false-dir"
    env.update(env_extra or {})
    return subprocess.run(
        [SPARK_EM, *args], capture_output=True, text=True, timeout=60, env=env, cwd=cwd
    )


def write(tmp_path, text: str) -> str:
    path = tmp_path / "job.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "toml,message",
    [
        (
            "[model]\nmaxiter = 5\n",
            "job.toml: unknown key 'maxiter' in [model] (did you mean 'max-iter'?)",
        ),
        ('[model]\nk = "three"\n', "job.toml: [model] k must be an integer, got str 'three'"),
        ("[model]\nk = 0\n", "job.toml: [model] k must be >= 1, got 0"),
        ("[model]\ntol = -1.0\n", "job.toml: [model] tol must be a finite number >= 0"),
        (
            '[model]\ncovariance-type = "ful"\n',
            "[model] covariance-type must be one of full, tied, diag, spherical",
        ),
        ("[input]\nsample-fraction = 1.5\n", "[input] sample-fraction must be in (0, 1], got 1.5"),
        ("[input]\nk = 3\n", "job.toml: key 'k' belongs in [model], not [input]"),
        ("[modle]\nk = 3\n", "job.toml: unknown table [modle] (did you mean 'model'?)"),
        ("[model\nk = 3\n", "job.toml is not valid TOML"),
        ("[output]\noverwrite = 1\n", "[output] overwrite must be true or false, got int 1"),
    ],
    ids=[
        "unknown-key",
        "wrong-type",
        "impossible",
        "negative-tol",
        "bad-choice",
        "fraction",
        "wrong-table",
        "unknown-table",
        "not-toml",
        "bool",
    ],
)
def test_bad_config_file_is_one_line_exit_2(tmp_path, toml, message):
    res = spark_em("fit", "--config", write(tmp_path, toml), "--input", "x", "--model-out", "m")
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spark-em fit: error: "), res.stderr
    assert message in lines[0]
    assert str(tmp_path / "job.toml") in lines[0] or "job.toml" in lines[0]


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["fit", "--k", "x", "--input", "i", "--model-out", "m"],
            "argument --k: invalid integer: 'x'",
        ),
        (["fit", "--k", "0", "--input", "i", "--model-out", "m"], "--k must be >= 1, got 0"),
        (["fit", "--kk", "3"], "unrecognized arguments: --kk 3"),
        (["fit", "--model-out", "m"], "no input: give --input PATH or --table NAME (or --demo)"),
        (["fit", "--input", "i"], "--model-out is required"),
        (
            ["fit", "--input", "i", "--table", "t", "--model-out", "m"],
            "--input and --table exclude each other",
        ),
        (
            ["fit", "--input", "i", "--model-out", "m", "--report-out", "hdfs://nn/r.json"],
            "--report-out must be a path on this machine",
        ),
        (["fit", "--input", "i", "--model-out", "m", "--mlflow"], "--mlflow needs a tracking URI"),
        (
            ["fit", "--config", "/no/such.toml", "--input", "i", "--model-out", "m"],
            "config file /no/such.toml does not exist",
        ),
        (["score", "--input", "i", "--output", "o"], "--model is required"),
        (
            ["score", "--input", "i", "--model", "m"],
            "give one of --output PATH or --output-table NAME",
        ),
        (
            [
                "score",
                "--input",
                "i",
                "--model",
                "m",
                "--output",
                "o",
                "--mode",
                "overwrite-partitions",
            ],
            "--mode overwrite-partitions needs --partition-by",
        ),
        (
            ["score", "--input", "i", "--model", "m", "--output", "o", "--probability-format", "x"],
            "argument --probability-format: invalid choice: 'x'",
        ),
        (["nope"], "unknown command 'nope'"),
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(v)[:40],
)
def test_bad_flags_are_one_line_exit_2(args, message):
    res = spark_em(*args)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], res.stderr


def test_print_config_merges_file_and_flags_and_round_trips(tmp_path):
    conf = write(
        tmp_path,
        '[input]\ninput = ["/lake/a", "/lake/b"]\nfeatures = "x,y"\n'
        '[model]\nk = 5\nmax-iter = 7\n[output]\nmodel-out = "/m"\n',
    )
    res = spark_em("fit", "--config", conf, "--k", "6", "--print-config")
    assert res.returncode == 0, res.stderr
    merged = tomllib.loads(res.stdout)
    assert merged["model"]["k"] == 6  # the flag wins
    assert merged["model"]["max-iter"] == 7  # from the file
    assert merged["model"]["tol"] == 1e-3  # the default
    assert merged["input"]["input"] == ["/lake/a", "/lake/b"]
    assert merged["input"]["features"] == ["x", "y"]
    assert "k = 6  # flag" in res.stdout and "max-iter = 7  # file" in res.stdout
    # the printed settings are a valid config file that gives the same settings again
    again = tmp_path / "again.toml"
    again.write_text(res.stdout)
    res2 = spark_em("fit", "--config", str(again), "--print-config")
    assert res2.returncode == 0, res2.stderr
    assert tomllib.loads(res2.stdout) == merged


@pytest.mark.parametrize(
    "name,command",
    [("fit.toml", "fit"), ("score.toml", "score"), ("select.toml", "select"), ("demo.toml", "fit")],
)
def test_shipped_config_files_are_valid(name, command):
    res = spark_em(command, "--config", str(ROOT / "conf" / name), "--print-config")
    assert res.returncode == 0, res.stderr


def test_help_lists_commands_and_options():
    res = spark_em("--help")
    assert res.returncode == 0 and "fit" in res.stdout and "score" in res.stdout
    res = spark_em("fit", "--help")
    assert res.returncode == 0
    for flag in (
        "--init-model",
        "--require-convergence",
        "--report-out",
        "--plot-dir",
        "--mlflow",
        "--spark-log-level",
        "--print-config",
        "--where",
    ):
        assert flag in res.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["--k", "2-8"], "--k must be a range like 2..8"),
        (["--k", "0..3"], "--k must be a range like 2..8"),
        (["--covariance-types", "full,banana"], "unknown covariance types ['banana']"),
        (["--criterion", "likelihood"], "--criterion"),
    ],
)
def test_bad_select_flags_are_one_line_exit_2(args, message):
    res = spark_em("select", "--input", "x.parquet", "--model-out", "m", *args)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], res.stderr


def _tiny_parquet(path: Path) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"features": [[1.0, 2.0], [2.0, 1.0]]}), str(path))
    return str(path)


def test_what_this_machine_can_check_is_refused_before_spark(tmp_path):
    """Existing outputs, missing paths and globs, a CSV given as --input, a missing model,
    an output under a file, a config file that is not UTF-8: one line each, without Java
    (the job never started Spark)."""
    import shutil

    data = _tiny_parquet(tmp_path / "d.parquet")
    model = tmp_path / "model"
    shutil.copytree(ROOT / "tests" / "fixtures" / "model-cd3f2cc-diag", model)
    scored = tmp_path / "scored"
    scored.mkdir()
    _tiny_parquet(scored / "part-00000.parquet")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    (tmp_path / "blocker").write_text("a file")
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b"[model]\n# caf\xe9\nk = 3\n")
    out = ["--model-out", str(tmp_path / "new")]
    cases = [
        (
            ["fit", "--input", data, "--model-out", str(model)],
            2,
            "already exists; pass --overwrite",
        ),
        (["fit", "--input", str(tmp_path / "nowhere"), *out], 1, "input path not found"),
        (["fit", "--input", f"{tmp_path}/day=*", *out], 1, "input path not found"),
        (["fit", "--input", str(tmp_path / "x.csv"), *out], 1, "is not a Parquet file"),
        (
            ["fit", "--input", data, "--init-model", str(tmp_path / "none"), *out],
            1,
            "--init-model",
        ),
        (
            ["fit", "--input", data, "--predictions-out", str(tmp_path / "blocker" / "p"), *out],
            2,
            "is a file, not a directory",
        ),
        (
            ["score", "--input", data, "--model", str(model), "--output", str(scored)],
            2,
            "already exists; choose --mode overwrite, overwrite-partitions or append",
        ),
        (["fit", "--config", str(latin1), "--input", data, *out], 2, "not UTF-8 text"),
        (
            ["fit", "--input", data, "--init-model", str(model), "--k", "5", *out],
            2,
            f"--k is 5 but --init-model {model} has k 2",
        ),
    ]
    for args, code, message in cases:
        res = spark_em(*args)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == code, (args, res.stderr)
        assert len(lines) == 1 and message in lines[0], (args, res.stderr)
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["d.parquet", "model", "scored", "x.csv", "blocker", "latin1.toml"]
    )


def test_print_config_shows_what_the_init_model_sets(tmp_path):
    model = ROOT / "tests" / "fixtures" / "model-cd3f2cc-diag"
    res = spark_em("fit", "--input", "x", "--init-model", str(model), "--print-config")
    assert res.returncode == 0, res.stderr  # no --model-out needed to print the settings
    assert "k = 2  # init-model" in res.stdout
    assert 'covariance-type = "diag"  # init-model' in res.stdout
