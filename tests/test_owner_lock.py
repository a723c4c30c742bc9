"""The stale sweep of block directories decides by the owner's lock, not its pid (issue 20,
point 6): a directory whose owner holds the ``flock`` on its ``owner.json`` is kept -- also
when the sweep runs in another PID namespace, where the owner's pid does not exist (the
case of containers sharing one local directory); a directory whose owner died (the kernel
dropped its lock) is removed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from spark_em.data.stores.block_dirs import OwnerLock, remove_stale_block_dirs

from .conftest import to_df

HOLD = textwrap.dedent(
    """
    import sys, time
    from spark_em.data.stores.block_dirs import OwnerLock
    OwnerLock.take(sys.argv[1])
    print("locked", flush=True)
    time.sleep(600)
    """
)
SWEEP = textwrap.dedent(
    """
    import json, os, sys
    from spark_em.data.stores.block_dirs import remove_stale_block_dirs
    pid = int(sys.argv[2])
    try:
        os.kill(pid, 0)
        seen = True
    except ProcessLookupError:
        seen = False
    print(json.dumps({"removed": remove_stale_block_dirs(sys.argv[1]), "owner_seen": seen}))
    """
)
UNSHARE = ["unshare", "--user", "--pid", "--fork", "--map-root-user"]


def block_dir(root, name):
    path = root / "spark-0000" / f"spark-em-blocks-{name}"
    path.mkdir(parents=True)
    (path / "part-000000.bin").write_bytes(b"\0" * 64)
    return path


def hold_lock(path):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def dead_owner(path):
    """A directory whose owner took the lock and died (SIGKILL: nothing of it ran after)."""
    proc = hold_lock(path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def unshare():
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1) on this machine")
    probe = subprocess.run([*UNSHARE, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare --user --pid is not permitted here: {probe.stderr.strip()}")


def sweep_in_new_pid_namespace(root, owner_pid):
    import json

    out = subprocess.run(
        [*UNSHARE, sys.executable, "-c", SWEEP, str(root), str(owner_pid)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    return json.loads(out.stdout)


def test_a_directory_locked_by_another_process_is_kept_until_it_dies(tmp_path):
    live = block_dir(tmp_path, "live")
    owner = hold_lock(live)
    try:
        assert remove_stale_block_dirs(str(tmp_path)) == []
        assert (live / "part-000000.bin").exists()
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=30)
    assert remove_stale_block_dirs(str(tmp_path)) == [str(live)]
    assert not live.exists()


def test_a_directory_locked_in_this_process_is_kept(tmp_path):
    """Concurrent fits in threads of one process: another store's lock counts as held."""
    live = block_dir(tmp_path, "here")
    lock = OwnerLock.take(str(live))
    try:
        assert remove_stale_block_dirs(str(tmp_path)) == []
    finally:
        lock.close()
    assert remove_stale_block_dirs(str(tmp_path)) == [str(live)]


def test_sweep_in_another_pid_namespace_keeps_the_live_and_removes_the_dead(tmp_path, unshare):
    live, dead = block_dir(tmp_path, "live"), block_dir(tmp_path, "dead")
    lock = OwnerLock.take(str(live))
    dead_owner(dead)
    try:
        got = sweep_in_new_pid_namespace(tmp_path, os.getpid())
        assert not got["owner_seen"]  # this process's pid means nothing in there
        assert got["removed"] == [str(dead)]
        assert (live / "part-000000.bin").exists() and not dead.exists()
    finally:
        lock.close()


def test_a_running_fits_store_survives_a_sweep_from_another_namespace(spark, unshare):
    """The real store: its blocks are written, a sweep in another PID namespace over its
    local root leaves them, and a pass after the sweep still reads them."""
    from spark_em.core.estep import EStepKernel
    from spark_em.core.mixture import GaussianParams
    from spark_em.data.passes import run_pass
    from spark_em.data.prepare import prepare

    X = np.random.default_rng(2).normal(size=(60, 2))
    store, data = prepare(to_df(spark, X), "features", block_cache="local")
    try:
        root = os.path.dirname(os.path.dirname(store.block_dir))
        got = sweep_in_new_pid_namespace(root, os.getpid())
        assert not got["owner_seen"]
        assert store.block_dir not in got["removed"]
        assert os.path.isdir(store.block_dir)
        params = GaussianParams.from_covariances(
            np.ones(1), X.mean(axis=0, keepdims=True), np.eye(2)[None], "full"
        )
        (st,), _ = run_pass(store, [EStepKernel(params, data.centre)], data.centre, "after sweep")
        assert st.n_rows == 60 and np.isfinite(st.log_likelihood)
    finally:
        store.release()
    assert not os.path.exists(store.block_dir)
