"""spark-submit entry point of ``spark-em score`` (see ``spark-em score --help``).

    spark-submit --py-files dist/spark_em-0.1.0.zip jobs/score.py --config conf/score.toml
"""

import sys

from spark_em.cli.main import run

if __name__ == "__main__":
    sys.exit(run("score"))
