r"""Pretrained trunk weights: where a ``weights`` setting is read from, the check before a run, the load.

Nothing is ever downloaded. A setting is ``None`` (random initialisation), a torchvision weight name such
as ``"IMAGENET1K_V1"`` whose file must already sit in torch's hub cache
(``$TORCH_HOME/hub/checkpoints/``, e.g. ``resnet18-f37072fd.pth``), or the path of a state-dict file of the
full torchvision model.

A config field holding such a setting names the trunks it initialises in its metadata, beside ``range``::

    image_weights: str | None = field(default="IMAGENET1K_V1", metadata={"weights_for": ("resnet18",)})
    weights: str | None = field(default="IMAGENET1K_V1", metadata={"weights_for": ("query_arch", "render_arch")})

(an entry is an architecture or the name of the config field that holds one). The runner's
``validate_run`` calls :func:`check_weights_available` on the method's config, so a run whose file is
missing stops before anything is written, with one line naming the file, its URL and the ``--set`` that
fixes it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import torch
from torch import Tensor

from ssl3d.core.config import ConfigError
from ssl3d.core.errors import UserError

__all__ = [
    "WEIGHTS_FOR", "WeightsNotFoundError", "check_weights_available", "load_weights", "local_weights_only",
    "weights_source",
]

#: the field-metadata key naming the trunks a weights setting initialises
WEIGHTS_FOR = "weights_for"

C = TypeVar("C")


class WeightsNotFoundError(UserError, FileNotFoundError):
    """Pretrained weights that are not on this machine (they are never downloaded)."""


@dataclasses.dataclass(frozen=True)
class WeightsSource:
    """Where the weights ``name`` of ``arch`` are read: ``path``; ``url`` = where to copy it from (None: a local file)."""

    arch: str
    name: str
    path: Path
    url: str | None


def weights_source(arch: str, weights: str, key: str = "weights") -> WeightsSource:
    """The file a weights setting reads for the trunk ``arch``; a setting that is neither a file nor a name is refused."""
    if os.path.isfile(weights):
        return WeightsSource(arch, weights, Path(weights), None)
    import torchvision  # here, not at the top: importing it costs seconds (torch._dynamo) in every process

    names = torchvision.models.get_model_weights(arch)
    try:
        enum = names[weights]
    except KeyError:
        valid = [w.name for w in names] + ["DEFAULT"]
        raise ConfigError(f"{key}={weights!r} is neither a file nor a torchvision weight name of {arch}; "
                          f"valid names: {', '.join(valid)} (or None for random initialisation)") from None
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(enum.url).path)
    return WeightsSource(arch, enum.name, path, enum.url)


def _missing_message(key: str, weights: str, missing: list[WeightsSource], archs: list[str], how: str) -> str:
    one = len(missing) == 1
    if len(archs) == 1:
        file_hint = f"a state dict saved from torchvision's {archs[0]}"
    else:  # one file initialises every trunk
        file_hint = f"one state dict loaded into every trunk, so only once {' and '.join(archs)} are one architecture"
    return (f"{key}={weights!r}: torchvision's {missing[0].name} weights of {' and '.join(s.arch for s in missing)} "
            f"are not available locally (looked for {' and '.join(str(s.path) for s in missing)}) and are never "
            f"downloaded: copy {'it' if one else 'them'} there from {' and '.join(str(s.url) for s in missing)}, "
            f"or {how} {key}=PATH ({file_hint}), or {how} {key}=None for random initialisation")


def check_weights_available(config: Any, section: str = "method.") -> None:
    """Refuse, in one line, a config whose pretrained weights (fields marked :data:`WEIGHTS_FOR`) are not here.

    Raises:
        WeightsNotFoundError: a torchvision weight file missing from the hub cache (its path, URL and the
            ``--set`` keys that fix it are named).
        ConfigError: a setting that is neither a file nor a torchvision weight name.
    """
    for f in dataclasses.fields(config):
        weights, wanted = getattr(config, f.name), f.metadata.get(WEIGHTS_FOR)
        if not wanted or weights is None:
            continue
        key = f"{section}{f.name}"
        archs = list(dict.fromkeys(getattr(config, a) if hasattr(config, a) else a for a in wanted))
        missing = [s for s in (weights_source(a, weights, key) for a in archs) if not s.path.is_file()]
        if missing:
            raise WeightsNotFoundError(_missing_message(key, weights, missing, archs, "--set"))


def local_weights_only(config: C) -> C:
    """``config`` with every weights field whose file is not on this machine set to None (random init).

    Only for checks that compare two networks' structure and seeded initialisation (the kit's untrained-twin
    check under every preset): both would load the same file into the same trunks, which cannot make them
    differ, so on a machine without the file (CI, offline) both start from their seeded random weights.
    A run never does this: :func:`check_weights_available` refuses it instead.
    """
    try:
        check_weights_available(config)
        return config
    except WeightsNotFoundError:
        marked = {f.name: None for f in dataclasses.fields(config) if f.metadata.get(WEIGHTS_FOR)}
        return dataclasses.replace(config, **marked)


def load_weights(arch: str, weights: str) -> dict[str, Tensor]:
    """The state dict a weights setting names, from a local file or torchvision's hub cache, never the network."""
    source = weights_source(arch, weights)
    if not source.path.is_file():
        raise WeightsNotFoundError(_missing_message("weights", weights, [source], [arch], "pass"))
    return torch.load(source.path, map_location="cpu", weights_only=True)
