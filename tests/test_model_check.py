"""A saved model directory is checked before any array is used: each tampering below gives
one ModelFormatError naming the path and the problem, never a Java stack trace."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spark_em import GaussianMixture, GaussianMixtureModel, ModelFormatError

WEIGHTS = [0.3, 0.7]
MEANS = [[0.0, 1.0], [4.0, -2.0]]
COVS = [[[1.0, 0.2], [0.2, 0.5]], [[2.0, -0.3], [-0.3, 1.0]]]


@pytest.fixture(scope="module")
def saved(spark, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("check") / "model"
    GaussianMixtureModel.fromParameters(WEIGHTS, MEANS, COVS, "full").save(str(path))
    return path


def only(path: Path, pattern: str) -> Path:
    (f,) = [f for f in path.glob(pattern) if not f.name.startswith((".", "_"))]
    return f


def drop_crc(f: Path) -> None:
    """Hadoop's local file system checks a file against its .crc sibling: drop it after an
    edit (except where a checksum mismatch is the tampering)."""
    (f.parent / f".{f.name}.crc").unlink(missing_ok=True)


def edit_metadata(change):
    def tamper(path: Path) -> None:
        f = only(path, "metadata/part-*")
        meta = json.loads(f.read_text())
        change(meta)
        f.write_text(json.dumps(meta) + "\n")
        drop_crc(f)

    return tamper


def edit_array(name, change):
    """Rewrite one array's row of the data file (values flattened, shape as saved)."""

    def tamper(path: Path) -> None:
        f = only(path, "data/*.parquet")
        rows = pq.read_table(f).to_pylist()
        for r in rows:
            if r["name"] == name:
                values = np.asarray(r["values"]).reshape(r["shape"])
                values = np.asarray(change(values.copy()), dtype=float)
                r["values"], r["shape"] = values.ravel().tolist(), list(values.shape)
        schema = pa.schema(
            [
                ("name", pa.string()),
                ("shape", pa.list_(pa.int32())),
                ("values", pa.list_(pa.float64())),
            ]
        )
        pq.write_table(pa.Table.from_pylist(rows, schema), f)
        drop_crc(f)

    return tamper


def set_at(index, value):
    def change(a):
        a[index] = value
        return a

    return change


def write_bytes(pattern, content: bytes | None = None, cut: float | None = None, crc=False):
    def tamper(path: Path) -> None:
        f = only(path, pattern)
        data = f.read_bytes()
        f.write_bytes(data[: int(len(data) * cut)] if cut is not None else content)
        if not crc:
            drop_crc(f)

    return tamper


def remove(sub):
    return lambda path: shutil.rmtree(path / sub)


def add_file(name, content=b"{}"):
    return lambda path: (path / name).write_bytes(content)


def second_metadata(path: Path) -> None:
    f = only(path, "metadata/part-*")
    shutil.copy(f, f.parent / "part-00001-copy.txt")


def replace_data_table(path: Path) -> None:
    f = only(path, "data/*.parquet")
    pq.write_table(pa.table({"id": [0, 1, 2]}), f)
    drop_crc(f)


def metadata_lines(path: Path) -> None:
    f = only(path, "metadata/part-*")
    f.write_text(f.read_text() + f.read_text())
    drop_crc(f)


def drop_param_map_k(meta):
    meta["paramMap"].pop("k", None)


TAMPERINGS = {
    "no metadata": (remove("metadata"), "no metadata file"),
    "no data": (remove("data"), "no data file"),
    "stray file at the top": (
        add_file("notes.txt"),
        "unexpected files in the model directory: notes.txt",
    ),
    "stray file in data": (add_file("data/extra.json"), "unexpected files .*data/extra.json"),
    "two metadata files": (second_metadata, "2 metadata files, expected one"),
    "metadata not JSON": (write_bytes("metadata/part-*", b"{not json\n"), "not valid JSON"),
    "metadata of two lines": (metadata_lines, "has 2 lines, expected one JSON line"),
    "metadata not text": (write_bytes("metadata/part-*", b"\xff\xfe\x00"), "is not text"),
    "unknown class": (
        edit_metadata(lambda m: m.update({"class": "foo.Bar"})),
        "found a saved foo.Bar, not a Gaussian mixture model",
    ),
    "no class": (edit_metadata(lambda m: m.pop("class")), "has no 'class' field"),
    "spark-em estimator": (
        edit_metadata(lambda m: m.update({"class": "spark_em.estimator.GaussianMixture"})),
        "estimator, not a model",
    ),
    "future format version": (
        edit_metadata(lambda m: m.update({"formatVersion": 2})),
        "formatVersion 2 .* reads formatVersion \\(1,\\)",
    ),
    "k inconsistent with the arrays": (
        edit_metadata(lambda m: (m.update({"k": 3}), drop_param_map_k(m))),
        "weights has shape \\(2,\\), expected \\(3,\\) for k=3",
    ),
    "k inconsistent with paramMap": (
        edit_metadata(lambda m: m.update({"k": 3})),
        "k=3 but its paramMap says k=2",
    ),
    "d not a number": (
        edit_metadata(lambda m: m.update({"d": "two"})),
        "'d' must be a positive integer",
    ),
    "covariance type inconsistent": (
        edit_metadata(lambda m: m.update({"covarianceType": "diag"})),
        "covariances has shape \\(2, 2, 2\\), expected \\(2, 2\\)",
    ),
    "unknown covariance type": (
        edit_metadata(lambda m: m.update({"covarianceType": "banded"})),
        "'covarianceType' must be one of",
    ),
    "truncated Parquet": (
        write_bytes("data/*.parquet", cut=0.5),
        "data/part-.* is not a readable Parquet file",
    ),
    "truncated Parquet, checksum kept": (
        write_bytes("data/*.parquet", cut=0.5, crc=True),
        "cannot read its files: .*(?i:checksum)",
    ),
    "garbage Parquet": (
        write_bytes("data/*.parquet", b"not parquet at all"),
        "not a readable Parquet file",
    ),
    "other columns": (replace_data_table, "data has columns \\['id'\\]"),
    "wrong number of values": (
        edit_array("means", lambda a: a.ravel()[:3]),
        "means has shape \\(3,\\), expected \\(2, 2\\)",
    ),
    "NaN mean": (edit_array("means", set_at((1, 0), np.nan)), "means contain NaN or infinite"),
    "infinite covariance": (
        edit_array("covariances", set_at((0, 0, 0), np.inf)),
        "covariances contain NaN or infinite",
    ),
    "negative weight": (
        edit_array("weights", lambda a: np.array([-0.5, 1.5])),
        "weights must be positive",
    ),
    "zero weight": (
        edit_array("weights", lambda a: np.array([0.0, 1.0])),
        "weights must be positive",
    ),
    "weights summing to 1.1": (
        edit_array("weights", lambda a: np.array([0.4, 0.7])),
        "weights sum to 1.1",
    ),
    "weights off by 1e-8": (edit_array("weights", lambda a: a + 0.5e-8), "not 1 \\(1e-9\\)"),
    "asymmetric covariance": (
        edit_array("covariances", set_at((1, 0, 1), 0.1)),
        "covariance 1 is not symmetric",
    ),
    "covariance not positive definite": (
        edit_array("covariances", set_at(0, [[1.0, 2.0], [2.0, 1.0]])),
        "covariance 0 is not positive definite",
    ),
    "bad Param value": (
        edit_metadata(lambda m: m["paramMap"].update({"maxIter": "many"})),
        "Params or summary are not valid",
    ),
    "unknown Param": (
        edit_metadata(lambda m: m["paramMap"].update({"colour": "red"})),
        "Params or summary are not valid \\(unknown Params \\['colour'\\]\\)",
    ),
    "bad summary": (
        edit_metadata(lambda m: m.update({"summary": {"k": 2}})),
        "Params or summary are not valid",
    ),
}


def drop_covariances(path: Path) -> None:
    f = only(path, "data/*.parquet")
    table = pq.read_table(f)
    pq.write_table(table.filter(pa.compute.not_equal(table["name"], "covariances")), f)
    drop_crc(f)


TAMPERINGS["missing array"] = (drop_covariances, "holds the arrays \\['weights', 'means'\\]")


@pytest.mark.parametrize("case", sorted(TAMPERINGS))
def test_tampered_model_directory_gets_one_clear_error(spark, saved, tmp_path, case):
    tamper, problem = TAMPERINGS[case]
    path = tmp_path / "model"
    shutil.copytree(saved, path)
    tamper(path)
    with pytest.raises(ModelFormatError, match=problem) as info:
        GaussianMixtureModel.load(str(path))
    message = str(info.value)
    assert message.startswith(f"cannot load a GaussianMixtureModel from {path}: ")
    assert "\tat " not in message and "\n" not in message and len(message) < 600
    # no chained exception (a Java one) is printed under it
    err = info.value
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)


@pytest.mark.parametrize("where", ["missing", "empty"])
def test_no_model_there(spark, tmp_path, where):
    path = tmp_path / "nothing"
    if where == "empty":
        path.mkdir()
    with pytest.raises(ModelFormatError, match="(PATH_NOT_FOUND|has no files)") as info:
        GaussianMixtureModel.load(str(path))
    assert str(path) in str(info.value)


def test_untampered_and_version_1_models_load(spark, saved, tmp_path):
    loaded = GaussianMixtureModel.load(str(saved))
    np.testing.assert_array_equal(loaded.covariances, COVS)
    # saved before formatVersion existed: read as version 1
    path = tmp_path / "v1"
    shutil.copytree(saved, path)
    edit_metadata(lambda m: m.pop("formatVersion"))(path)
    np.testing.assert_array_equal(GaussianMixtureModel.load(str(path)).means, MEANS)
    # weights off by less than 1e-9 still load (rounding of a sum)
    edit_array("weights", lambda a: a + 1e-11)(path)
    assert GaussianMixtureModel.load(str(path)).weights.sum() == pytest.approx(1.0, abs=1e-9)


def test_estimator_initial_model_is_checked_too(spark, saved, tmp_path):
    path = tmp_path / "estimator"
    GaussianMixture(k=2, initialModel=GaussianMixtureModel.load(str(saved))).save(str(path))
    edit_array("means", set_at((0, 1), np.nan))(path / "initialModel")
    with pytest.raises(ModelFormatError, match="initialModel: means contain NaN"):
        GaussianMixture.load(str(path))
