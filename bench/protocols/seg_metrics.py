r"""Part-segmentation metrics in the ShapeNetPart convention (pure numpy).

The ShapeNetPart evaluation (Yi et al. 2016; PointNet, Qi et al. 2017, Sec. 5.1)
scores a shape by the mean IoU over the parts *of its category*:

.. math::
    \mathrm{mIoU}(s) = \frac{1}{|P_c|} \sum_{p \in P_c}
    \begin{cases}
        \dfrac{|\{\hat y_i = p\} \cap \{y_i = p\}|}{|\{\hat y_i = p\} \cup \{y_i = p\}|} & \text{if the union is not empty} \\
        1 & \text{otherwise,}
    \end{cases}

where :math:`P_c` is the set of global part ids of the shape's category
:math:`c`. A part that neither the prediction nor the ground truth contains
counts as perfectly segmented, so shapes with missing parts are not punished
for correctly predicting nothing there.

Aggregates: ``instance_miou`` is the mean over all test shapes, ``class_miou``
the mean over categories of the per-category mean (each category weighs the
same however many shapes it has), ``point_acc`` the fraction of correctly
labelled points over all points of all shapes. All three are reported in %.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["shape_miou", "segmentation_metrics"]


def shape_miou(pred: np.ndarray, target: np.ndarray, parts: Sequence[int]) -> float:
    r"""Mean IoU of one shape over the parts of its category (empty part = IoU 1).

    Args:
        pred: predicted global part id of every point.
        target: ground-truth global part id of every point.
        parts: the global part ids of the shape's category (:math:`P_c`).

    Returns:
        :math:`\mathrm{mIoU}(s)` as a fraction in :math:`[0, 1]` (not %).

    Shapes:
        - **pred:** :math:`(N,)` integer
        - **target:** :math:`(N,)` integer
    """
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape or pred.ndim != 1:
        raise ValueError(f"pred and target must be 1-d arrays of equal length; got {pred.shape} and {target.shape}")
    parts = list(parts)
    if not parts:
        raise ValueError("parts must list at least one part id")
    ious = []
    for p in parts:
        in_pred = pred == p
        in_target = target == p
        union = np.count_nonzero(in_pred | in_target)
        # absent from both: nothing to get wrong (ShapeNetPart convention)
        ious.append(1.0 if union == 0 else np.count_nonzero(in_pred & in_target) / union)
    return float(np.mean(ious))


def segmentation_metrics(
    preds: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    categories: Sequence[str],
    category_parts: Mapping[str, Sequence[int]],
) -> dict:
    r"""Instance mIoU, class mIoU and point accuracy over a test set (in %).

    .. math::
        \text{instance} = \frac{1}{S} \sum_s \mathrm{mIoU}(s), \qquad
        \text{class} = \frac{1}{|C|} \sum_{c \in C} \frac{1}{S_c} \sum_{s \in c} \mathrm{mIoU}(s), \qquad
        \text{acc} = \frac{\sum_s |\{\hat y_i = y_i\}|}{\sum_s N_s}

    with :math:`C` the categories that occur in ``categories``.

    Args:
        preds: per shape, the predicted global part ids.
        targets: per shape, the ground-truth global part ids.
        categories: per shape, its category name (a key of ``category_parts``).
        category_parts: category name -> its global part ids.

    Returns:
        ``{"instance_miou", "class_miou", "point_acc"}`` floats in % and
        ``"per_category"``: category -> mean shape mIoU in %, in order of first
        appearance.

    Shapes:
        - **preds[s], targets[s]:** :math:`(N_s,)` integer
    """
    if not (len(preds) == len(targets) == len(categories)):
        raise ValueError(
            f"preds, targets and categories must have one entry per shape; got {len(preds)}, {len(targets)}, {len(categories)}"
        )
    if len(preds) == 0:
        raise ValueError("segmentation_metrics needs at least one shape")
    by_category: dict[str, list[float]] = {}
    correct = total = 0
    for pred, target, category in zip(preds, targets, categories):
        if category not in category_parts:
            raise ValueError(f"unknown category {category!r}; known: {', '.join(map(str, category_parts))}")
        pred = np.asarray(pred)
        target = np.asarray(target)
        by_category.setdefault(category, []).append(shape_miou(pred, target, category_parts[category]))
        correct += int(np.count_nonzero(pred == target))
        total += int(target.size)
    per_category = {c: 100.0 * float(np.mean(v)) for c, v in by_category.items()}
    every_shape = [iou for v in by_category.values() for iou in v]
    return {
        "instance_miou": 100.0 * float(np.mean(every_shape)),
        "class_miou": float(np.mean(list(per_category.values()))),
        "point_acc": 100.0 * correct / max(total, 1),
        "per_category": per_category,
    }
