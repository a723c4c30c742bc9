"""spark-submit entry point of ``spark-em select`` (see ``spark-em select --help``).

spark-submit --py-files dist/spark_em-0.1.0.zip jobs/select.py --config conf/select.toml
"""

import os
import sys

# This file's directory is sys.path[0] when it runs as a script, and its name would then
# hide the standard library's ``select`` module (used by subprocess and sockets).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

from spark_em.cli.main import run  # noqa: E402

if __name__ == "__main__":
    sys.exit(run("select"))
