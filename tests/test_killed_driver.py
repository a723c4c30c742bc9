"""A driver killed in the middle of a fit leaves no block files behind.

The block and parameter files of local block files live in Spark's own per-application local
directory (``<spark.local.dir or SPARK_LOCAL_DIRS>/spark-<uuid>/``).  A real driver process
(tests/killed_driver_app.py: its own local[1] session) is killed after its first EM
iteration:

* SIGTERM to the Python driver: Python dies at once (no handler), pyspark's JVM sees its stdin
  close and exits through ``System.exit``, whose shutdown hooks delete the application's
  local directories -- the block files with them;
* SIGKILL to the whole process group (Python and JVM): nothing runs, the directory stays; the
  next fit under the same local root removes it, since the lock on its ``owner.json`` died
  with its owner (tests/test_owner_lock.py).
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from spark_em import GaussianMixture

from .conftest import to_df

APP = Path(__file__).resolve().parent / "killed_driver_app.py"


def _block_dirs(root) -> set[str]:
    return set(glob.glob(os.path.join(str(root), "**", "spark-em-blocks-*"), recursive=True))


def _gone(pid: int, timeout: float = 90.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


class Driver:
    """A driver process in its own process group, started at once, waited for later."""

    def __init__(
        self, tmp_path: Path, local_dir: str | None = None, env_local_dirs: str | None = None
    ):
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.marker, self.log = tmp_path / "marker.json", tmp_path / "driver.log"
        env = dict(os.environ)
        env.pop("SPARK_LOCAL_DIRS", None)
        if env_local_dirs:
            env["SPARK_LOCAL_DIRS"] = env_local_dirs
        args = [sys.executable, str(APP), str(self.marker)] + ([local_dir] if local_dir else [])
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def running(self) -> dict:
        """Wait until the fit has done an EM iteration; ``{pid, jvm_pid}``."""
        deadline = time.time() + 300
        while not self.marker.exists():
            if self.proc.poll() is not None or time.time() > deadline:
                self.kill()
                raise AssertionError("the driver did not start:\n" + self.log.read_text()[-3000:])
            time.sleep(0.2)
        return json.loads(self.marker.read_text())

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def drivers(spark, tmp_path_factory):
    """Both drivers start together (each needs its own JVM): one whose local directory comes
    from SPARK_LOCAL_DIRS, one sharing the test session's spark.local.dir root."""
    base = tmp_path_factory.mktemp("killed-drivers")
    env_root = base / "from-env"
    env_root.mkdir()
    session_root = spark.sparkContext.getConf().get("spark.local.dir").split(",")[0]
    before = _block_dirs(session_root)
    started = {
        "term": Driver(base / "term", env_local_dirs=str(env_root)),
        "kill": Driver(base / "kill", local_dir=session_root),
    }
    try:
        yield {"env_root": env_root, "session_root": session_root, "before": before, **started}
    finally:
        for d in started.values():
            d.kill()


def test_sigterm_lets_spark_remove_the_block_files_under_spark_local_dirs(drivers):
    root, driver = drivers["env_root"], drivers["term"]
    info = driver.running()
    (block_dir,) = _block_dirs(root)  # under SPARK_LOCAL_DIRS, in Spark's app directory
    assert Path(block_dir).parent.name.startswith("spark-")
    assert json.loads((Path(block_dir) / "owner.json").read_text())["pid"] == info["pid"]
    assert glob.glob(os.path.join(block_dir, "part-*.bin"))
    os.kill(info["pid"], signal.SIGTERM)
    assert driver.proc.wait(timeout=60) == -signal.SIGTERM
    assert _gone(info["jvm_pid"]), "pyspark's JVM outlived its driver"
    assert _block_dirs(root) == set()
    assert not glob.glob(os.path.join(str(root), "spark-*"))  # Spark's own app directory too


def test_sigkill_leaves_the_block_dir_and_the_next_fit_removes_it(spark, drivers):
    root, driver = drivers["session_root"], drivers["kill"]
    info = driver.running()
    os.killpg(driver.proc.pid, signal.SIGKILL)
    assert driver.proc.wait(timeout=60) == -signal.SIGKILL
    assert _gone(info["jvm_pid"])
    (left,) = _block_dirs(root) - drivers["before"]
    assert json.loads((Path(left) / "owner.json").read_text())["pid"] == info["pid"]
    X = np.random.default_rng(1).normal(size=(50, 2))
    GaussianMixture(k=2, maxIter=1, blockCache="local").fit(to_df(spark, X))
    assert not os.path.exists(left)
    assert _block_dirs(root) == drivers["before"]
