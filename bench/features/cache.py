"""Frozen features kept on disk, so protocols and runs that embed the same split with the same weights embed once.

A suite embeds the same shapes with the same network many times: the budget curve scores a snapshot on
the validation part of train, then ``svm`` embeds train and test with the same final weights,
``retrieval`` embeds test again, the RBF SVM repeats the linear one, and an untrained run uses the
weights of the curve's epoch-0 snapshot. On the 2-core CPU a DGCNN pass over ModelNet10 takes minutes.

**Key.** A feature file is reused only when everything ``embed`` reads is the same:

* the method's name, version and config without ``train`` (training settings reach ``embed`` only
  through the weights), and a SHA-256 of every weight tensor (``weights_digest``);
* the code that embeds: a SHA-256 of the source files of the method's classes, of every module class in
  its network and of the modality's tensor builder (``code_digest``), so an edit to a ``forward`` or to
  ``embed_batch`` never meets features of the old code (random baselines have no other guard: their
  weights depend on the seed only), and the device type (GPU convolutions may use TF32);
* the dataset's name, split, its whole config but ``workers`` (settings applied when reading, such as a
  scene's block cutting or a photo split's gallery views, are in no cache file's name), the shapes it
  keeps (its valid indices: a shape another loaded modality lacks is skipped) and the path, size and
  modification time of the embedded modality's cache file (a rebuilt cache makes new keys). The other
  modalities a run loads are not in the key: a protocol that also reads voxels or photos embeds the
  same points as one that reads points alone;
* the embedded modality.

Only whole splits of a :class:`~ssl3d.datasets.base.ShapeDataset`, views of one (``SplitView``) and
``FirstViews`` that keeps every view (retrieval's default) are cached, and only for ``points``, ``voxels``
and ``views``, which the data contract reads straight from the cache (photos come with masks and
renders: not cached). A view of at least half a split computes and
keeps the whole split (the curve's 80% fit part then serves the 20% validation part and the later
``svm`` run); a smaller view (few-shot supports) is embedded alone unless its split is already cached.

Files: ``<data root>/features/<method>/<key>.npz`` (``features`` float32 [S, D], ``labels`` int64 [S]),
written atomically; a damaged file is named in a warning, moved aside (``.corrupt-<time>``) and
recomputed. A data root that cannot be written only loses the cache (a warning), never the run.
``SSL3D_FEATURE_CACHE=0`` turns the cache off.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ssl3d.bench.features.splits import SplitView
from ssl3d.bench.features.views import FirstViews
from ssl3d.core.config import to_dict
from ssl3d.core.io import atomic_path, move_aside
from ssl3d.datasets.base import ShapeDataset
from ssl3d.datasets.modalities.registry import group_of

log = logging.getLogger(__name__)

ENV = "SSL3D_FEATURE_CACHE"
FORMAT = 3  # bump when the key or the file layout changes
CACHED_MODALITIES = frozenset({"points", "voxels", "views"})
MIN_FRACTION = 0.5  # a view this large computes (and keeps) its whole split

Features = tuple[np.ndarray, np.ndarray]


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over every parameter and buffer: name, dtype, shape and bytes, in ``state_dict`` order."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _source_file(obj: Any) -> str | None:
    try:
        return inspect.getsourcefile(obj)
    except TypeError:  # built-in: nothing to read
        return None


def code_digest(method: Any, modality: str) -> str:
    """SHA-256 of the source files defining the method's classes, its network's modules and the modality builder."""
    objects = [cls for cls in type(method).__mro__ if cls is not object]
    objects += [type(m) for m in method.model.modules()]
    objects.append(group_of(modality).modalities[modality])
    files = sorted({f for f in map(_source_file, objects) if f})
    digest = hashlib.sha256()
    for name in files:
        if "site-packages" in name and "ssl3d" not in name:  # torch's own modules: its version is enough
            continue
        digest.update(name.encode() + b"|" + Path(name).read_bytes())
    digest.update(f"torch {torch.__version__}".encode())
    return digest.hexdigest()


def feature_key(method: Any, data: ShapeDataset, modality: str) -> str:
    # only the embedded modality's cache file: a run that also loads other groups embeds the same tensors,
    # and the shapes it keeps are in `valid`
    path = data.cache_path(group_of(modality).name)
    stat = path.stat()
    files = [[str(path.resolve()), stat.st_size, stat.st_mtime_ns]]
    config = {k: v for k, v in to_dict(method.config).items() if k != "train"}
    data_config = {k: v for k, v in to_dict(data.config).items() if k != "workers"}  # workers never change arrays
    valid = np.ascontiguousarray(data._valid, dtype=np.int64)
    device = next(method.model.parameters(), torch.empty(0)).device.type
    payload = {"format": FORMAT, "method": method.name, "version": getattr(method, "version", None),
               "config": config, "weights": weights_digest(method.model), "code": code_digest(method, modality),
               "device": device, "dataset": data.name, "split": data.split, "data_config": data_config,
               "valid": hashlib.sha256(valid.tobytes()).hexdigest(),
               "files": files, "modality": modality}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _load(path: Path, n_shapes: int) -> Features | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            features, labels = stored["features"], stored["labels"]
        if features.ndim != 2 or len(features) != n_shapes or labels.shape != (n_shapes,) \
                or not np.isfinite(features).all():
            raise ValueError(f"features {features.shape}, labels {labels.shape} for a split of {n_shapes} shapes")
        return features, labels
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        aside = move_aside(path)  # None when another process moved it first
        log.warning("%s: damaged feature cache (%s); %s, embedding again", path, exc,
                    f"moved to {aside.name}" if aside else "already moved aside")
        return None


def _save(path: Path, features: np.ndarray, labels: np.ndarray) -> None:
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:  # a file object: np.savez would append ".npz" to a path
                np.savez(handle, features=features, labels=labels)
    except OSError as exc:  # a read-only or full data root loses the cache, not the run
        log.warning("%s: feature cache not written (%s)", path, exc)


def _cacheable(method: Any, dataset: Any, modality: str) -> tuple[ShapeDataset, np.ndarray | None] | None:
    if os.environ.get(ENV, "1") == "0" or modality not in CACHED_MODALITIES:
        return None
    if not isinstance(getattr(method, "model", None), torch.nn.Module):
        return None
    if type(dataset) is FirstViews and (dataset.n_views == 0 or modality != "views"):
        dataset = dataset.dataset  # every view kept, or another modality: the items are the split's own
    if isinstance(dataset, ShapeDataset):
        return dataset, None
    if type(dataset) is SplitView and isinstance(dataset.parent, ShapeDataset):  # not other wrappers (FirstViews)
        return dataset.parent, dataset.indices
    return None


def cached_features(method: Any, dataset: Any, modality: str, compute: Callable[[Any], Features]) -> Features:
    """``compute(dataset)``, or the same arrays from the feature cache (see the module docstring)."""
    source = _cacheable(method, dataset, modality)
    if source is None:
        return compute(dataset)
    split, indices = source
    split._ensure_ready()
    path = Path(split.root) / "features" / method.name / f"{feature_key(method, split, modality)}.npz"
    stored = _load(path, len(split))
    if stored is None:
        if indices is not None and len(indices) < MIN_FRACTION * len(split):
            return compute(dataset)
        stored = compute(split)
        _save(path, *stored)
    else:
        log.info("features of %s/%s (%s) from %s", split.name, split.split, modality, path)
    features, labels = stored
    return (features, labels) if indices is None else (features[indices], labels[indices])
