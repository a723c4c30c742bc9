"""The project skeleton promised by the README: packaging metadata and the CI entry point."""

from __future__ import annotations

import re
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_declares_package_and_dependencies():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["name"] == "spark-em" and meta["requires-python"] == ">=3.10"
    deps = " ".join(meta["dependencies"])
    for name in ("pyspark", "numpy", "scipy", "pyarrow"):
        assert name in deps
    assert re.search(r"pandas[^ ]*<3", deps)
    dev = " ".join(meta["optional-dependencies"]["dev"])
    for name in ("pytest", "chispa", "scikit-learn"):
        assert name in dev


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in readme and "bash scripts/demo.sh" in readme
    assert "bash scripts/test.sh" in ci
    for script in ("setup.sh", "test.sh", "demo.sh"):
        assert (ROOT / "scripts" / script).is_file()
    assert "spark-em fit --demo" in (ROOT / "scripts" / "demo.sh").read_text()
