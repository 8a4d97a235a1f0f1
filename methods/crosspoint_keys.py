r"""The released CrossPoint checkpoints' key layout, mapped onto :class:`~ssl3d.methods.crosspoint.CrossPointNet`.

The official point model (``models/dgcnn.py``: ``DGCNN(args)``, ``cls=-1``; saved by
``torch.save(point_model.state_dict())``) holds, for EdgeConv layers ``l = 1..4``,
``conv{l}.0.weight`` :math:`[C_l, 2 C_{l-1}, 1, 1]` and its BatchNorm twice, as ``bn{l}.*`` and
``conv{l}.1.*`` (one module registered under both names); ``conv5.0.weight`` :math:`[E, 512, 1]`
with ``bn5.*`` / ``conv5.1.*``; and the projection head ``inv_head.{0,1,3}.*`` (Linear with bias,
BatchNorm, Linear with bias). Our DGCNN (preset ``dgcnn-cls``) has the same layers and widths; two
things differ:

* the edge feature is ``[x_j - x_i, x_i]`` in the official ``get_graph_feature`` and
  ``[x_i, x_j - x_i]`` in :class:`~ssl3d.methods.backbones.dgcnn.EdgeConv`, so the two column halves
  of every EdgeConv weight are swapped;
* the 1x1 convolutions are stored as plain matrices (trailing unit dimensions dropped).

The official image model (``ResNet(resnet50())``) is ``resnet.*`` (torchvision's keys, ``fc``
removed) and ``inv_head.{0,1,3}.*`` (no biases): :class:`ImageBranch` uses the same names, so only
the prefix ``image.`` is added; its first convolution reads RGB where ours reads one grey channel.
Every mapping refuses, naming the first key or shape that does not fit, before returning anything.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

__all__ = ["from_official_image_state", "from_official_point_state", "to_official_point_state"]

BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
HEAD_KEYS = ("0.weight", "0.bias", *(f"1.{key}" for key in BN_KEYS), "3.weight", "3.bias")


def _swap_halves(weight: Tensor) -> Tensor:
    """Exchange the two column halves of an EdgeConv weight (the edge feature's two parts)."""
    c = weight.shape[1] // 2
    return torch.cat([weight[:, c:], weight[:, :c]], dim=1)


def _layers(reference: Mapping[str, Tensor]) -> int:
    n = 0
    while f"points.convs.{n}.weight" in reference:
        n += 1
    return n


def _plan(reference: Mapping[str, Tensor]) -> dict[str, str]:
    """Official key -> our key, for every tensor the official point model stores once (not the duplicates)."""
    layers = _layers(reference)
    if layers == 0 or any(f"points.convs.{i}.linears.0.weight" in reference for i in range(layers)):
        raise ValueError("the reference is not a CrossPointNet with one-layer EdgeConvs (DGCNN preset 'dgcnn-cls')")
    plan = {}
    for l in range(1, layers + 1):
        plan[f"conv{l}.0.weight"] = f"points.convs.{l - 1}.weight"
        plan.update({f"bn{l}.{key}": f"points.convs.{l - 1}.norms.0.{key}" for key in BN_KEYS})
    top = layers + 1
    plan[f"conv{top}.0.weight"] = "points.aggregate.weight"
    plan.update({f"bn{top}.{key}": f"points.aggregate_norm.{key}" for key in BN_KEYS})
    plan.update({f"inv_head.{key}": f"point_head.{key}" for key in HEAD_KEYS})
    return plan


def _duplicates(layers: int) -> dict[str, str]:
    """``conv{l}.1.*`` -> ``bn{l}.*``: the second name of each official BatchNorm."""
    return {f"conv{l}.1.{key}": f"bn{l}.{key}" for l in range(1, layers + 2) for key in BN_KEYS}


def from_official_point_state(official: Mapping[str, Tensor], reference: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The official point model's state dict as ours: ``points.*`` and ``point_head.*`` keys of ``reference``.

    Args:
        official: ``torch.load`` of a released point checkpoint (e.g. ``dgcnn_cls_best.pth``).
        reference: our ``CrossPointNet.state_dict()`` (its keys and shapes are the target).

    Raises:
        ValueError: an unexpected or missing key, a duplicate BatchNorm that differs from its twin, or a
            shape that does not fit (the first one found, named with both shapes).
    """
    plan = _plan(reference)
    twins = _duplicates(_layers(reference))
    for key in official:
        if key not in plan and key not in twins:
            hint = " (strip DataParallel's 'module.' prefix first)" if key.startswith("module.") else ""
            raise ValueError(f"unexpected key {key!r} in the official point state dict{hint}; "
                             "expected the DGCNN encoder (cls=-1) and inv_head only")
    for key in [*plan, *twins]:
        if key not in official:
            raise ValueError(f"key {key!r} is missing from the official point state dict")
    for twin, key in twins.items():
        if not torch.equal(official[twin], official[key]):
            raise ValueError(f"{twin!r} differs from {key!r}; in the official model they are one BatchNorm")
    mapped = {}
    for key, ours in plan.items():
        value = official[key]
        if key.startswith("conv"):  # 1x1 convolutions -> matrices; EdgeConv columns in our edge-feature order
            if value.dim() > 2 and value.shape[2:].numel() == 1:
                value = value.reshape(value.shape[:2])
            if ours.startswith("points.convs.") and value.dim() == 2:
                value = _swap_halves(value)
        if tuple(value.shape) != tuple(reference[ours].shape):
            raise ValueError(f"official {key!r} has shape {tuple(official[key].shape)}, which does not fit our "
                             f"{ours!r} of shape {tuple(reference[ours].shape)}")
        mapped[ours] = value.clone()
    return mapped


def to_official_point_state(ours: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Our ``points.*`` / ``point_head.*`` tensors in the official point model's layout and key order.

    The inverse of :func:`from_official_point_state` (the BatchNorm twins ``conv{l}.1.*`` included),
    so a checkpoint trained here loads into the released ``DGCNN(args)`` with ``strict=True``.
    """
    plan = _plan(ours)
    layers = _layers(ours)
    state = {}
    for key, mine in plan.items():  # bn1..bnL+1 first, then conv*, then inv_head: the official order
        if key.startswith("bn"):
            state[key] = ours[mine].clone()
    for l in range(1, layers + 2):
        weight = ours[plan[f"conv{l}.0.weight"]]
        weight = _swap_halves(weight).reshape(*weight.shape, 1, 1) if l <= layers else weight.unsqueeze(-1)
        state[f"conv{l}.0.weight"] = weight.clone()
        state.update({f"conv{l}.1.{key}": state[f"bn{l}.{key}"] for key in BN_KEYS})
    state.update({key: ours[mine].clone() for key, mine in plan.items() if key.startswith("inv_head.")})
    return state


def from_official_image_state(official: Mapping[str, Tensor], reference: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The official image model's state dict (``resnet.*``, ``inv_head.*``) as our ``image.*`` keys.

    Raises:
        ValueError: as :func:`from_official_point_state`; the released ResNet's RGB ``resnet.conv1.weight``
            ``[64, 3, 7, 7]`` is refused against our grey ``[64, 1, 7, 7]``.
    """
    expected = {key[len("image."):]: key for key in reference if key.startswith("image.")}
    if not expected:
        raise ValueError("the reference holds no image.* keys (not a CrossPointNet state dict)")
    for key in official:
        if key not in expected:
            raise ValueError(f"unexpected key {key!r} in the official image state dict")
    mapped = {}
    for key, ours in expected.items():
        if key not in official:
            raise ValueError(f"key {key!r} is missing from the official image state dict")
        if tuple(official[key].shape) != tuple(reference[ours].shape):
            raise ValueError(f"official {key!r} has shape {tuple(official[key].shape)}, which does not fit our "
                             f"{ours!r} of shape {tuple(reference[ours].shape)}")
        mapped[ours] = official[key].clone()
    return mapped
