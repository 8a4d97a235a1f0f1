r"""CM-CV's training samples (Jing et al., CVPRW 2021, Sec. 3.3 / Algorithm 1).

:class:`CrossViewSampler` wraps the pretraining data (one sample = a cloud, two
views of its object and a view of another object); :func:`in_batch_triplets`
builds the same triplets inside a plain batch of the data contract.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ssl3d.core.seeding import epoch_seed

__all__ = ["CrossViewSampler", "in_batch_triplets"]


class CrossViewSampler(Dataset):
    r"""Training samples of Sec. 3.3 / Algorithm 1 over a dataset of ``points`` + ``views``.

    An epoch of ``len`` = ``length`` (or :math:`n`) samples uses every object
    :math:`\lfloor len / n \rfloor` times, and once more :math:`len \bmod n`
    objects drawn from a per-epoch permutation (so draws per object differ by
    at most one; :math:`k \bmod n` would favour the first, e.g. label-sorted,
    objects every epoch). Sample :math:`k` is the cloud :math:`p` of object
    :math:`i` (:meth:`object_index`), two distinct random views
    :math:`img_1, img_2` among its first ``train_views``, and a random view
    :math:`img_3` of an object :math:`j \ne i` drawn uniformly from the
    :math:`n - 1` others (labels :math:`y = (1, 1, 0)` are implied).

    The permutation depends only on ``(seed, epoch)``; :meth:`set_epoch`
    writes the epoch to shared memory, so (persistent) DataLoader workers and
    all ranks agree. Views and negatives come from torch's global generator,
    which the trainer re-seeds every epoch (workers seed from the loader's
    generator): a seed gives the same samples for a given ``num_workers``.
    Category labels are not passed on.

    Shapes:
        - **output:** ``points`` :math:`(N, 3)`; ``img1``, ``img2``, ``img3``
          :math:`(C, H, W)`; ``index``, ``negative_index`` scalars
    """

    def __init__(self, data: Dataset, train_views: int, length: int = 0, seed: int = 0) -> None:
        if len(data) < 2:
            raise ValueError(f"CM-CV needs at least 2 objects to draw negatives; got {len(data)}")
        if train_views < 2:
            raise ValueError(f"train_views must be >= 2; got {train_views}")
        self.data, self.train_views, self.length, self.seed = data, train_views, length, seed
        # shared memory: worker processes (persistent ones too) read the epoch the main process sets
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._cached: tuple[int, list[int]] | None = None  # (epoch, its permutation), per process

    def __len__(self) -> int:
        return self.length or len(self.data)

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch`` (call before iterating over the epoch)."""
        self._epoch.fill_(int(epoch))

    def object_index(self, k: int) -> int:
        """The object of sample ``k`` in the current epoch (see the class docstring)."""
        n = len(self.data)
        full = (len(self) // n) * n
        if k < full:
            return k % n
        epoch = int(self._epoch)
        if self._cached is None or self._cached[0] != epoch:
            g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
            self._cached = (epoch, torch.randperm(n, generator=g).tolist())
        return self._cached[1][k - full]

    def _views(self, i: int) -> Tensor:
        views = self.data[i]["views"]
        if views.shape[0] < self.train_views:
            raise ValueError(f"object {i} has {views.shape[0]} views; the sampler needs {self.train_views}")
        return views

    def __getitem__(self, k: int) -> dict[str, Tensor]:
        n = len(self.data)
        i = self.object_index(int(k))
        j = int(torch.randint(n - 1, ()))
        j += j >= i  # skip i: uniform over the other n - 1 objects
        sample = self.data[i]
        views = self._views(i)
        a, b = torch.randperm(self.train_views)[:2].tolist()
        c = int(torch.randint(self.train_views, ()))
        return {"points": sample["points"], "img1": views[a], "img2": views[b], "img3": self._views(j)[c],
                "index": torch.tensor(i), "negative_index": torch.tensor(j)}


def in_batch_triplets(views: Tensor, train_views: int) -> tuple[Tensor, Tensor, Tensor]:
    r"""(img1, img2, img3) from a plain batch of views: the negative is another object of the batch.

    Shapes:
        - **views:** :math:`(B, V, C, H, W)`, :math:`B \ge 2` -> three :math:`(B, C, H, W)`
    """
    b, v = views.shape[:2]
    if b < 2:
        raise ValueError("in-batch negatives need a batch of at least 2 objects")
    usable = min(v, train_views)
    if usable < 2:
        raise ValueError(f"need >= 2 views per object; got {v}")
    ab = torch.rand(b, usable, device=views.device).argsort(dim=1)[:, :2]
    neg = (torch.arange(b, device=views.device) + 1 + torch.randint(b - 1, (b,), device=views.device)) % b
    c = torch.randint(usable, (b,), device=views.device)
    rows = torch.arange(b, device=views.device)
    return views[rows, ab[:, 0]], views[rows, ab[:, 1]], views[neg, c]
