"""The ``synth`` dataset and its procedural shape generator.

* :mod:`~ssl3d.datasets.synth.dataset`: the registered ``synth`` dataset (splits, settings);
* :mod:`~ssl3d.datasets.synth.shapes`: :func:`generate_shape`, categories and part names;
* :mod:`~ssl3d.datasets.synth.builders`: one design per category;
* :mod:`~ssl3d.datasets.synth.parts`: the primitives and the part-labelled mesh assembler.
"""

from ssl3d.datasets.synth.dataset import SynthConfig, SynthDataset

__all__ = ["SynthConfig", "SynthDataset"]
