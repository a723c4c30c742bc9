"""``--align-to MODEL`` of ``fit``, ``select`` and ``update``: the job's model with its
components reordered to match a saved model's (:meth:`spark_em.GaussianMixtureModel.alignTo`),
so that cluster numbers stay the same across nights."""

from __future__ import annotations

from .inputs import load_model
from .options import STR, Option

ALIGN_TO = Option(
    "align-to",
    "model",
    STR,
    "reorder the model's components to match this saved model's (least total "
    "Bhattacharyya distance), so that cluster numbers stay the same across nights",
    metavar="PATH",
)


def aligned(model, path: str):
    """``model`` with its components in the order of the saved model at ``path``, and the
    report's record of it (the path and the new order)."""
    from ..core.alignment import alignment

    reference = load_model(path, "align-to")
    order = alignment(model.mixture, reference.mixture).tolist()
    return model.alignTo(reference), {"model": path, "order": order}
