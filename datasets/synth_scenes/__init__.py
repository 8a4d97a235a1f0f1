"""``synth-scenes``: the embedded scene dataset (S3DIS-like rooms from the synth object generator).

* :mod:`~ssl3d.datasets.synth_scenes.rooms`: :func:`generate_room`, the area styles;
* :mod:`~ssl3d.datasets.synth_scenes.dataset`: the registered ``synth-scenes`` dataset.
"""

from ssl3d.datasets.synth_scenes.dataset import SynthScenesConfig, SynthScenesDataset

__all__ = ["SynthScenesConfig", "SynthScenesDataset"]
