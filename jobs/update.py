"""spark-submit entry point of ``spark-em update`` (see ``spark-em update --help``).

spark-submit --py-files dist/spark_em-0.1.0.zip jobs/update.py --model /models/gmm/0 \
    --input /lake/features --window 30 --refresh 2 --model-out /models/gmm/1
"""

import os
import sys

# This file's directory is sys.path[0] when it runs as a script; jobs/select.py there would
# hide the standard library's ``select`` module (used by subprocess and sockets).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

from spark_em.cli.main import run  # noqa: E402

if __name__ == "__main__":
    sys.exit(run("update"))
