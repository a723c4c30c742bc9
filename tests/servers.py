"""Real Spark processes for the tests: a Spark Connect server started with pyspark's own
``sbin/start-connect-server.sh``, and a standalone cluster (master + workers) started with
``bin/spark-class``.  Everything listens on loopback, logs into a temporary directory, and is
stopped by process id (never by name).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyspark

SPARK_HOME = Path(pyspark.__file__).resolve().parent


def write_id_features_parquet(path, X) -> str:
    """One Parquet file with ``id`` (long) and ``features`` (array<double>) columns: the data
    that the Connect and cluster processes read from disk."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    feats = pa.FixedSizeListArray.from_arrays(pa.array(np.ravel(X)), X.shape[1])
    feats = feats.cast(pa.list_(pa.float64()))
    pq.write_table(pa.table({"id": pa.array(np.arange(len(X))), "features": feats}), str(path))
    return str(path)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child counts as dead
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _stop_pid(pid: int, grace: float = 30.0) -> None:
    """SIGTERM, wait, then SIGKILL — this one process id only."""
    if not _alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def _wait_for_port(port: int, pid_of, log: Path, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _accepts(port):
            return
        pid = pid_of()
        if pid is not None and not _alive(pid):
            raise RuntimeError(f"{what} exited during start-up; log tail:\n{_tail(log)}")
        time.sleep(0.5)
    raise TimeoutError(
        f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f}s; log tail:\n{_tail(log)}"
    )


# Short-lived test JVMs: the C1 compiler only starts faster and burns less CPU on 2 cores.
FAST_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env["SPARK_HOME"] = str(SPARK_HOME)
    env.pop("PYTHONPATH", None)
    env.pop("SPARK_REMOTE", None)
    env.pop("SPARK_CONNECT_MODE_ENABLED", None)
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    return env


# ---------------------------------------------------------------------------------------
# Spark Connect server
# ---------------------------------------------------------------------------------------
@dataclass
class ConnectServer:
    workdir: Path
    port: int = 0
    env: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"sc://localhost:{self.port}"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "log"

    def pid(self) -> int | None:
        files = list((self.workdir / "pid").glob("*.pid"))
        if not files:
            return None
        try:
            return int(files[0].read_text().strip())
        except (OSError, ValueError):
            return None

    def log_tail(self) -> str:
        logs = sorted(self.log_dir.glob("*.out"))
        return _tail(logs[0]) if logs else "(no server log)"

    def start(
        self, master: str = "local[2]", conf: dict[str, str] | None = None, timeout: float = 180.0
    ) -> ConnectServer:
        self.port = free_port()
        self.env = base_env()
        self.env.update(
            PYSPARK_PYTHON=sys.executable,  # the server's Python workers import spark_em
            SPARK_PID_DIR=str(self.workdir / "pid"),
            SPARK_LOG_DIR=str(self.log_dir),
            SPARK_IDENT_STRING=f"spark-em-tests-{os.getpid()}",
        )
        settings = {
            "spark.connect.grpc.binding.port": str(self.port),
            "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.ui.enabled": "false",
            "spark.driver.host": "127.0.0.1",
            "spark.driver.memory": "1g",
            "spark.driver.extraJavaOptions": FAST_JVM,
            "spark.sql.shuffle.partitions": "4",
            "spark.executorEnv.OMP_NUM_THREADS": "1",
            "spark.executorEnv.OPENBLAS_NUM_THREADS": "1",
        }
        settings.update(conf or {})
        cmd = ["bash", str(SPARK_HOME / "sbin" / "start-connect-server.sh"), "--master", master]
        for key, value in settings.items():
            cmd += ["--conf", f"{key}={value}"]
        out = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"start-connect-server.sh failed: {out.stdout}\n{out.stderr}")
        try:
            logs = sorted(self.log_dir.glob("*.out"))
            _wait_for_port(
                self.port,
                self.pid,
                logs[0] if logs else self.log_dir,
                "Spark Connect server",
                timeout,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        pid = self.pid()
        subprocess.run(
            ["bash", str(SPARK_HOME / "sbin" / "stop-connect-server.sh")],
            env=self.env or base_env(),
            capture_output=True,
            timeout=60,
        )
        if pid is not None:  # wait for the JVM to go (SIGKILL if it lingers)
            _stop_pid(pid)


# ---------------------------------------------------------------------------------------
# Standalone cluster: one master, n workers (separate JVMs, separate Python workers)
# ---------------------------------------------------------------------------------------
@dataclass
class StandaloneCluster:
    workdir: Path
    procs: list = field(default_factory=list)
    port: int = 0

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def _spawn(self, name: str, args: list[str], env: dict) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "wb")
        # spark-class execs the JVM, so this pid is the daemon's own
        proc = subprocess.Popen(
            [str(SPARK_HOME / "bin" / "spark-class"), *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self.procs.append((name, proc))
        return proc

    def start(
        self,
        workers: int = 2,
        cores: int = 1,
        memory: str = "1g",
        worker_env: dict[str, str] | None = None,
        timeout: float = 180.0,
    ):
        env = base_env()
        env["SPARK_DAEMON_MEMORY"] = "256m"
        env["SPARK_DAEMON_JAVA_OPTS"] = FAST_JVM
        self.port = free_port()
        try:
            master = self._spawn(
                "master",
                [
                    "org.apache.spark.deploy.master.Master",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--webui-port",
                    str(free_port()),
                ],
                env,
            )
            _wait_for_port(
                self.port,
                lambda: master.pid,
                self.workdir / "master.log",
                "standalone master",
                timeout,
            )
            wenv = dict(env)
            wenv.update(worker_env or {})
            for i in range(workers):
                wdir = self.workdir / f"worker{i}"
                wdir.mkdir(exist_ok=True)
                self._spawn(
                    f"worker{i}",
                    [
                        "org.apache.spark.deploy.worker.Worker",
                        self.master_url,
                        "--host",
                        "127.0.0.1",
                        "--cores",
                        str(cores),
                        "--memory",
                        memory,
                        "--work-dir",
                        str(wdir),
                        "--webui-port",
                        str(free_port()),
                    ],
                    wenv,
                )
            self._wait_for_workers(workers, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for_workers(self, n: int, timeout: float) -> None:
        log = self.workdir / "master.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if log.read_text(errors="replace").count("Registering worker") >= n:
                return
            for name, proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited during start-up; log tail:\n"
                        f"{_tail(self.workdir / f'{name}.log')}"
                    )
            time.sleep(0.5)
        raise TimeoutError(
            f"{n} workers did not register within {timeout:.0f}s; master log:\n{_tail(log)}"
        )

    def stop(self) -> None:
        # workers (they stop their executors) and master together, then wait for each
        for _, proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for _, proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.procs.clear()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{_tail(p)}" for p in sorted(self.workdir.glob("*.log")))
