"""Data augmentations of the built-in methods, one kind per module.

* :mod:`~ssl3d.methods.augment.crops` - image crops and flips (CM-CV, CMIC);
* :mod:`~ssl3d.methods.augment.points` - point-cloud rotation and jitter (CM-CV);
* :mod:`~ssl3d.methods.augment.colour_transfer` - Reinhard colour transfer (CMIC);
* :mod:`~ssl3d.methods.augment.hsv` - HSV colour jitter (CMIC's ``cmic-hsv`` ablation).
"""

from ssl3d.methods.augment.colour_transfer import (
    batch_colour_transfer, colour_transfer, lab_to_rgb, random_derangement, rgb_to_lab,
)
from ssl3d.methods.augment.crops import center_crop, random_crop_flip, random_resized_crop_flip
from ssl3d.methods.augment.hsv import hsv_jitter, hsv_to_rgb, rgb_to_hsv
from ssl3d.methods.augment.points import rotate_jitter

__all__ = [
    "batch_colour_transfer", "center_crop", "colour_transfer", "hsv_jitter", "hsv_to_rgb", "lab_to_rgb",
    "random_crop_flip", "random_derangement", "random_resized_crop_flip", "rgb_to_hsv", "rgb_to_lab",
    "rotate_jitter",
]
