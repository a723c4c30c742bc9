"""pyspark's own example for ``pyspark.ml.clustering.GaussianMixture`` (the doctest in its
docstring, read from the installed pyspark), run with spark-em's classes in its place.

The expected outputs are MLlib's.  The example is adapted only where spark-em differs on
purpose (each adaptation below says why, and the README's migration table lists them):

* component order: spark-em's initialisation (k-means on a sample) is not MLlib's, so the
  same three clusters can come out in another order.  ``order`` maps MLlib's component
  index to spark-em's (by the means MLlib's example prints), and the examples that print a
  component by its index look it up through ``order``; the printed values stay MLlib's.
* ``hasSummary`` after loading: spark-em saves the summary with the model (MLlib does not).
* ``weights`` is a numpy array (MLlib: a list), so ``==`` compares element-wise.
"""

from __future__ import annotations

import doctest
import textwrap

import numpy as np
import pytest
from pyspark.ml.clustering import GaussianMixture as MLlibGaussianMixture
from pyspark.ml.linalg import DenseVector

from spark_em import GaussianMixture, GaussianMixtureModel

# the means of MLlib's components 0, 1, 2 as its example prints them
MLLIB_MEANS = np.array([[0.825, 0.8675], [-0.87, -0.72], [-0.055, -0.075]])

ORDER = "spark-em's components are numbered by its own initialisation"
ADAPTATIONS = [
    (">>> model = gm.fit(df)\n", ">>> model = gm.fit(df)\n>>> order = mllib_order(model)\n", ORDER),
    (
        ">>> model.predict(df.head().features)\n",
        ">>> order.index(model.predict(df.head().features))\n",
        ORDER,
    ),
    (
        ">>> model.predictProbability(df.head().features)\n",
        ">>> DenseVector(model.predictProbability(df.head().features).toArray()[order])\n",
        ORDER,
    ),
    (
        ">>> gaussians = model.gaussians\n",
        ">>> gaussians = [model.gaussians[i] for i in order]\n",
        ORDER,
    ),
    (
        '>>> model.gaussiansDF.select("mean").head()\n',
        '>>> model.gaussiansDF.select("mean").collect()[order[0]]\n',
        ORDER,
    ),
    (
        '>>> model.gaussiansDF.select("cov").head()\n',
        '>>> model.gaussiansDF.select("cov").collect()[order[0]]\n',
        ORDER,
    ),
    (
        '>>> model2.gaussiansDF.select("mean").head()\n',
        '>>> model2.gaussiansDF.select("mean").collect()[order[0]]\n',
        ORDER,
    ),
    (
        '>>> model2.gaussiansDF.select("cov").head()\n',
        '>>> model2.gaussiansDF.select("cov").collect()[order[0]]\n',
        ORDER,
    ),
    (
        ">>> model2.hasSummary\nFalse\n",
        ">>> model2.hasSummary\nTrue\n",
        "spark-em saves the training summary with the model",
    ),
    (
        ">>> model2.weights == model.weights\nTrue\n",
        ">>> bool((model2.weights == model.weights).all())\nTrue\n",
        "weights is a numpy array",
    ),
]


def pyspark_example() -> str:
    doc = textwrap.dedent(MLlibGaussianMixture.__doc__)
    return doc[doc.index(">>> ") :]


def adapted_example() -> str:
    text = pyspark_example()
    for old, new, _ in ADAPTATIONS:
        assert text.count(old) == 1, f"pyspark's example changed: {old!r}"
        text = text.replace(old, new)
    return text


def mllib_order(model) -> list[int]:
    """spark-em's index of MLlib's components 0, 1, 2 (nearest mean)."""
    order = [int(np.argmin(np.linalg.norm(model.means - m, axis=1))) for m in MLLIB_MEANS]
    assert sorted(order) == [0, 1, 2], model.means
    return order


def test_pyspark_gaussian_mixture_example_runs_with_spark_em(spark, tmp_path):
    original = doctest.DocTestParser().get_doctest(pyspark_example(), {}, "pyspark", None, 0)
    test = doctest.DocTestParser().get_doctest(
        adapted_example(),
        {
            "spark": spark,
            "GaussianMixture": GaussianMixture,
            "GaussianMixtureModel": GaussianMixtureModel,
            "temp_path": str(tmp_path),
            "mllib_order": mllib_order,
            "DenseVector": DenseVector,
        },
        "pyspark.ml.clustering.GaussianMixture (spark-em)",
        None,
        0,
    )
    # every example of pyspark's runs (one line added: the component order)
    assert len(test.examples) == len(original.examples) + 1 >= 50
    out: list[str] = []
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    result = runner.run(test, out=out.append)
    assert result.failed == 0, "".join(out)
    assert result.attempted == len(test.examples)


@pytest.mark.parametrize("old,new,why", ADAPTATIONS)
def test_every_adaptation_is_needed_and_documented(old, new, why):
    """Each adaptation changes the text and names its reason (which the README lists)."""
    assert old != new and why
    assert old in pyspark_example()
