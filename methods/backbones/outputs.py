"""The point-backbone contract: what PointNet/DGCNN accept and what they return."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class PointBackboneOutput:
    r"""The outputs of a point-cloud backbone (:class:`PointNet`, :class:`DGCNN`).

    Args:
        global_feature: the pooled shape descriptor :math:`z` (the feature that
            ``embed()`` returns and that linear-SVM protocols score).
        point_features: per-point local features for segmentation heads. These
            are the backbone's local features (concatenated over layers where
            the architecture concatenates them) and do **not** include the
            repeated global feature; a head that wants ``[local, global]``
            concatenates ``global_feature`` itself.
        logits: per-point outputs :math:`\mathcal{S}` of the optional
            segmentation head (``None`` when the backbone was built without
            one).
        input_transform: PointNet's predicted input alignment matrix
            (``None`` when unused).
        feature_transform: PointNet's predicted feature alignment matrix, for
            the orthogonality regulariser (``None`` when unused).

    Shapes:
        - **global_feature:** :math:`(B, D_g)`
        - **point_features:** :math:`(B, N, D_p)`
        - **logits:** :math:`(B, N, J)` or ``None``
        - **input_transform:** :math:`(B, 3, 3)` or ``None``
        - **feature_transform:** :math:`(B, 64, 64)` or ``None``
    """

    global_feature: Tensor
    point_features: Tensor
    logits: Tensor | None = None
    input_transform: Tensor | None = None
    feature_transform: Tensor | None = None


def check_points(points: Tensor, in_channels: int) -> None:
    """Raise ``ValueError`` unless ``points`` is a float batch ``[B, N, in_channels]``.

    Args:
        points: the batch handed to a point backbone.
        in_channels: the number of per-point channels the backbone was built for.
    """
    if points.dim() != 3:
        raise ValueError(
            f"points must be a batch [B, N, C]; got shape {tuple(points.shape)} "
            "(add a batch dimension with points.unsqueeze(0) for one cloud)"
        )
    if points.shape[-1] != in_channels:
        raise ValueError(
            f"points have {points.shape[-1]} channels per point but the backbone was built "
            f"with in_channels={in_channels}"
        )
    if points.shape[1] < 1 or points.shape[0] < 1:
        raise ValueError(f"points must hold at least one cloud of one point; got {tuple(points.shape)}")
    if not points.is_floating_point():
        raise ValueError(f"points must be a floating-point tensor; got {points.dtype}")


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is a positive ``int`` (not a bool), else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return value
