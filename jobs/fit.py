"""spark-submit entry point of ``spark-em fit`` (see ``spark-em fit --help``).

    spark-submit --py-files dist/spark_em-0.1.0.zip jobs/fit.py --config conf/fit.toml
    python jobs/fit.py --demo                      # embedded local Spark
"""

import sys

from spark_em.cli.main import run

if __name__ == "__main__":
    sys.exit(run("fit"))
