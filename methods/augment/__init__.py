"""Data augmentations of the built-in methods, one kind per module.

* :mod:`~ssl3d.methods.augment.crops` - image crops and flips (CM-CV, CMIC);
* :mod:`~ssl3d.methods.augment.points` - point-cloud rotation and jitter (CM-CV), CrossPoint's scale,
  translation, clipped jitter and input dropout;
* :mod:`~ssl3d.methods.augment.colour_transfer` - Reinhard colour transfer (CMIC);
* :mod:`~ssl3d.methods.augment.hsv` - HSV colour jitter (CMIC's ``cmic-hsv`` ablation);
* :mod:`~ssl3d.methods.augment.colour_jitter` - brightness / contrast / saturation jitter (CrossPoint).
"""

from ssl3d.methods.augment.colour_jitter import adjust_images, colour_jitter
from ssl3d.methods.augment.colour_transfer import (
    batch_colour_transfer, colour_transfer, lab_to_rgb, random_derangement, rgb_to_lab,
)
from ssl3d.methods.augment.crops import center_crop, random_crop_flip, random_resized_crop_flip
from ssl3d.methods.augment.hsv import hsv_jitter, hsv_to_rgb, rgb_to_hsv
from ssl3d.methods.augment.points import (
    clipped_jitter, normalize_unit_sphere, random_input_dropout, random_scale, random_translate, rotate_jitter,
    rotate_y,
)

__all__ = [
    "adjust_images", "batch_colour_transfer", "center_crop", "clipped_jitter", "colour_jitter", "colour_transfer",
    "hsv_jitter", "hsv_to_rgb", "lab_to_rgb", "normalize_unit_sphere", "random_crop_flip", "random_derangement",
    "random_input_dropout", "random_resized_crop_flip", "random_scale", "random_translate", "rgb_to_hsv",
    "rgb_to_lab", "rotate_jitter", "rotate_y",
]
