"""The official Point-MAE checkpoint layout and ours: a renaming of three prefixes, checked key by key.

The official pretraining checkpoint (``tools/builder.py: save_checkpoint``) is a dict whose
``base_model`` holds ``Point_MAE.state_dict()`` (keys prefixed ``module.`` when it was saved from
``nn.DataParallel``). Its modules (``models/Point_MAE.py``) and ours (:mod:`ssl3d.methods.point_mae_net`)
have the same tensors under these names:

================================  ==============================
official                          ours
================================  ==============================
``MAE_encoder.encoder.*``         ``encoder.patch_embed.*``
``MAE_encoder.*`` (the rest)      ``encoder.*``
``MAE_decoder.*``                 ``decoder.*``
anything else                     the same name
================================  ==============================

(``mask_token``, ``decoder_pos_embed.*``, ``increase_dim.0.*``). :func:`official_to_ours` refuses,
naming the first offending key, a tensor of another shape (a model of other sizes), a key with no
counterpart and a key that is missing, so a wrong file never half-loads.
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import Tensor, nn

__all__ = ["PREFIXES", "load_official_state", "official_to_ours", "ours_to_official"]

#: (official prefix, our prefix), most specific first
PREFIXES: tuple[tuple[str, str], ...] = (
    ("MAE_encoder.encoder.", "encoder.patch_embed."),
    ("MAE_encoder.", "encoder."),
    ("MAE_decoder.", "decoder."),
)


def _rename(key: str, pairs: tuple[tuple[str, str], ...]) -> str:
    for old, new in pairs:
        if key.startswith(old):
            return new + key[len(old):]
    return key


def ours_to_official(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Our state dict under the official key names (what ``Point_MAE.state_dict()`` holds)."""
    return {_rename(key, tuple((new, old) for old, new in PREFIXES)): value for key, value in state.items()}


def official_to_ours(checkpoint: Mapping[str, Any], expected: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """An official checkpoint's tensors under our names, checked against ``expected`` (our model's state dict).

    Args:
        checkpoint: the loaded file (a dict with ``base_model``) or the bare ``Point_MAE`` state dict.
        expected: ``model.state_dict()`` of the model to fill (names and shapes).

    Raises:
        ValueError: naming the first key with no counterpart, of another shape, or missing.
    """
    state = checkpoint.get("base_model", checkpoint)
    if not isinstance(state, Mapping):
        raise ValueError("checkpoint['base_model'] is not a state dict; expected the official Point-MAE "
                         "pretraining checkpoint (tools/builder.py save_checkpoint)")
    ours: dict[str, Tensor] = {}
    for key, value in state.items():
        official = key[len("module."):] if key.startswith("module.") else key
        name = _rename(official, PREFIXES)
        if name not in expected:
            raise ValueError(f"official key {official!r} (ours: {name!r}) has no counterpart in point-mae; "
                             "is this a Point-MAE pretraining checkpoint (not a fine-tuned one)?")
        if tuple(value.shape) != tuple(expected[name].shape):
            raise ValueError(f"official key {official!r}: shape {tuple(value.shape)} but point-mae's {name!r} is "
                             f"{tuple(expected[name].shape)}; set the method's sizes to the checkpoint's "
                             "(trans_dim, depth, group_size, patch_hidden...)")
        ours[name] = value
    missing = [name for name in expected if name not in ours]
    if missing:
        official = ours_to_official({missing[0]: expected[missing[0]]})
        raise ValueError(f"the checkpoint lacks official key {next(iter(official))!r} (ours: {missing[0]!r})"
                         f"{f' and {len(missing) - 1} more' if len(missing) > 1 else ''}")
    return ours


def load_official_state(model: nn.Module, checkpoint: Mapping[str, Any]) -> nn.Module:
    """Fill ``model`` (a :class:`~ssl3d.methods.point_mae_net.PointMAENet`) from an official checkpoint, all or none."""
    model.load_state_dict(official_to_ours(checkpoint, model.state_dict()), strict=True)
    return model
