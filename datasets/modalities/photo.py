r"""Photo-like query images of a mesh: coloured parts, a random light, a random background.

A stand-in for real query photos (Pix3D-style queries of CMIC, Lin et al. 2021,
Sections 3.2 and 4.1: a colour image of the object plus its object mask). All
randomness is drawn from the given ``np.random.Generator`` in a fixed order
(:func:`sample_photo_params`), so a photo is a pure function of the mesh, the
parts and the generator state.

Image formation (per pixel, with the face normal :math:`\mathbf{n}` turned
towards the camera, view vector :math:`\mathbf{v}`, light direction
:math:`\mathbf{l}`, half vector :math:`\mathbf{h} = (\mathbf{l} +
\mathbf{v}) / \lVert\cdot\rVert`, part albedo :math:`\mathbf{a}`, light colour
:math:`\mathbf{c}` and intensity :math:`E`), a Blinn-Phong material:

.. math::
    \mathbf{I} = \mathbf{a} \odot \big(k_a + E\,\mathbf{c}\max(\mathbf{n}\cdot\mathbf{l}, 0)\big)
        + k_s E\,\mathbf{c}\,[\mathbf{n}\cdot\mathbf{l} > 0]\max(\mathbf{n}\cdot\mathbf{h}, 0)^{p}

Geometry follows :mod:`.render` exactly (same normalisation into the unit
sphere, same camera distance and field of view). The random crop is a change of
intrinsics (zoom and principal-point offset, see :mod:`.cameras`), so the mask
is exactly :func:`.render.silhouette` under the same ``zoom`` and ``offset``.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
import trimesh

from .cameras import direction_from_angles
from .render import cast_views

__all__ = [
    "PhotoParams",
    "PhotoResult",
    "sample_photo_params",
    "make_background",
    "compose_photo",
    "render_photo",
]

BACKGROUNDS = ("flat", "gradient", "noise")


@dataclass(frozen=True)
class PhotoParams:
    """Every random choice behind one photo (see :func:`sample_photo_params` for the ranges).

    Shapes:
        - **camera**: :math:`[3]` unit direction
        - **part_colours**: :math:`[P, 3]` albedo in [0, 1], one row per distinct part id (sorted)
        - **light_dir**: :math:`[3]` unit vector towards the light, camera frame (x right, y up, z back)
        - **light_colour**: :math:`[3]`, max component 1
        - **background_colours**: :math:`[K, 3]`: K = 1 (flat), 2 (gradient) or g*g (noise grid, row-major)
    """

    camera: np.ndarray
    zoom: float
    offset: tuple[float, float]
    part_colours: np.ndarray
    light_dir: np.ndarray
    light_colour: np.ndarray
    light_intensity: float
    ambient: float
    specular: float
    shininess: float
    background: str
    background_colours: np.ndarray
    gradient_angle: float


@dataclass(frozen=True)
class PhotoResult:
    """One photo-like query.

    Shapes:
        - **image**: :math:`[H, W, 3]` uint8 RGB
        - **mask**: :math:`[H, W]` bool, the object's silhouette in ``image``
        - **camera**: :math:`[3]` unit camera direction
    """

    image: np.ndarray
    mask: np.ndarray
    camera: np.ndarray
    params: PhotoParams


def _hsv(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]) -> np.ndarray:
    h, s, v = rng.uniform(0.0, 1.0), rng.uniform(*sat), rng.uniform(*val)
    return np.array(colorsys.hsv_to_rgb(h, s, v))


def sample_photo_params(
    rng: np.random.Generator,
    n_parts: int,
    *,
    camera: np.ndarray | None = None,
    crop: bool = True,
) -> PhotoParams:
    """Draw the random settings of one photo.

    Ranges: camera azimuth uniform in [0, 360) and elevation in [5, 40] degrees
    (photos are mostly taken from slightly above); crop zoom in [0.85, 1.15]
    and offset in [-0.06, 0.06] NDC per axis; background flat, linear gradient
    or smooth noise (a 3..7 square grid of colours, a base colour plus
    N(0, 0.12) per channel, bilinearly upsampled), one third each; background
    colours in HSV with saturation [0, 0.6] and value [0.2, 1]; part albedos in
    HSV with saturation [0.15, 0.9] and value [0.3, 0.95], redrawn (up to 20
    times) while closer than 0.25 (RGB distance) to the mean background colour;
    light from the viewer's side, up to 60 degrees off the optical axis
    horizontally and 0..60 degrees up, tinted
    (each channel 1 - U[0, 0.3], then max-normalised), intensity [0.6, 1.1],
    ambient [0.15, 0.35], specular weight [0, 0.5] with exponent [8, 64].

    Args:
        rng: the generator all draws come from.
        n_parts: number of distinct part ids to colour (>= 1).
        camera: fixed unit camera direction, or None to draw one.
        crop: False disables the random crop (zoom 1, offset 0).

    Returns:
        :class:`PhotoParams`.
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if isinstance(n_parts, bool) or not isinstance(n_parts, (int, np.integer)) or n_parts < 1:
        raise ValueError(f"n_parts must be a positive integer, got {n_parts!r}")
    if camera is None:
        cam = direction_from_angles(rng.uniform(0.0, 360.0), rng.uniform(5.0, 40.0))
    else:
        cam = np.asarray(camera, dtype=np.float64)
        norm = np.linalg.norm(cam) if cam.shape == (3,) else 0.0
        if not (np.isfinite(norm) and norm > 0):
            raise ValueError("camera must be a finite non-zero direction of shape [3]")
        cam = cam / norm
    if crop:
        zoom = float(rng.uniform(0.85, 1.15))
        offset = (float(rng.uniform(-0.06, 0.06)), float(rng.uniform(-0.06, 0.06)))
    else:
        zoom, offset = 1.0, (0.0, 0.0)

    kind = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    n_bg = {"flat": 1, "gradient": 2}.get(kind) or int(rng.integers(3, 8)) ** 2
    bg = np.stack([_hsv(rng, (0.0, 0.6), (0.2, 1.0)) for _ in range(min(n_bg, 2))])
    if kind == "noise":  # a mottled texture around one colour, not a patchwork of hues
        bg = np.clip(bg[0] + rng.normal(0.0, 0.12, size=(n_bg, 3)), 0.0, 1.0)
    angle = float(rng.uniform(0.0, 2.0 * np.pi))
    bg_mean = bg.mean(axis=0)

    colours = []
    for _ in range(int(n_parts)):
        for _ in range(20):
            c = _hsv(rng, (0.15, 0.9), (0.3, 0.95))
            if np.linalg.norm(c - bg_mean) >= 0.25:
                break
        colours.append(c)

    az, el = np.deg2rad(rng.uniform(-60.0, 60.0)), np.deg2rad(rng.uniform(0.0, 60.0))
    light_dir = np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])
    tint = 1.0 - rng.uniform(0.0, 0.3, size=3)
    return PhotoParams(
        camera=cam,
        zoom=zoom,
        offset=offset,
        part_colours=np.stack(colours),
        light_dir=light_dir,
        light_colour=tint / tint.max(),
        light_intensity=float(rng.uniform(0.6, 1.1)),
        ambient=float(rng.uniform(0.15, 0.35)),
        specular=float(rng.uniform(0.0, 0.5)),
        shininess=float(rng.uniform(8.0, 64.0)),
        background=kind,
        background_colours=bg,
        gradient_angle=angle,
    )


def _bilinear_weights(n_in: int, n_out: int) -> np.ndarray:
    # [n_out, n_in] linear-interpolation matrix, pixel centres spread over the grid's span
    pos = (np.arange(n_out) + 0.5) / n_out * (n_in - 1)
    lo = np.minimum(np.floor(pos).astype(int), n_in - 2)
    frac = pos - lo
    w = np.zeros((n_out, n_in))
    w[np.arange(n_out), lo] = 1.0 - frac
    w[np.arange(n_out), lo + 1] = frac
    return w


def make_background(params: PhotoParams, image_size: int) -> np.ndarray:
    """The background image of a photo (float RGB in [0, 1], no object).

    Args:
        params: the photo's settings.
        image_size: square image side :math:`S`.

    Returns:
        float64 image.

    Shapes:
        - **output**: :math:`[S, S, 3]`
    """
    s = int(image_size)
    cols = params.background_colours
    if params.background == "flat":
        return np.broadcast_to(cols[0], (s, s, 3)).copy()
    if params.background == "gradient":
        c = (np.arange(s) + 0.5) / s - 0.5
        proj = np.cos(params.gradient_angle) * c[None, :] + np.sin(params.gradient_angle) * c[:, None]
        t = (proj - proj.min()) / max(proj.max() - proj.min(), 1e-12)
        return cols[0] * (1.0 - t[..., None]) + cols[1] * t[..., None]
    g = int(round(np.sqrt(len(cols))))
    w = _bilinear_weights(g, s)
    rows = (w @ cols.reshape(g, g * 3)).reshape(s, g, 3)  # interpolate down the rows, then across
    return np.einsum("xj,yjc->yxc", w, rows)


def _part_index(mesh: trimesh.Trimesh, face_part: np.ndarray | None) -> np.ndarray:
    n_faces = len(mesh.faces)
    if face_part is None:
        return np.zeros(n_faces, dtype=np.int64)
    face_part = np.asarray(face_part)
    if face_part.shape != (n_faces,) or not np.issubdtype(face_part.dtype, np.integer):
        raise ValueError(
            f"face_part must be integer part ids of shape [{n_faces}], got {face_part.dtype} {face_part.shape}"
        )
    return np.unique(face_part, return_inverse=True)[1].reshape(-1)


def compose_photo(
    mesh: trimesh.Trimesh, face_part: np.ndarray | None, params: PhotoParams, image_size: int = 224
) -> PhotoResult:
    """Render a photo from explicit settings (no randomness; see the module docstring).

    Args:
        mesh: the shape, +Y up, any scale.
        face_part: integer part id of every face, or None for one part.
        params: the settings; ``params.part_colours`` needs one row per
            distinct part id (in sorted id order).
        image_size: square image side :math:`S`.

    Returns:
        :class:`PhotoResult`.

    Shapes:
        - **face_part**: :math:`[F]`
    """
    part_index = _part_index(mesh, face_part)
    if len(params.part_colours) <= part_index.max():
        raise ValueError(f"params has {len(params.part_colours)} part colours, the mesh {part_index.max() + 1} parts")
    hits = cast_views(mesh, params.camera[None], image_size, zoom=params.zoom, offset=params.offset)
    mask = hits.mask[0]
    image = make_background(params, image_size)

    n = hits.normal[0][mask].astype(np.float64)
    view = -hits.ray[0][mask]
    light = hits.rotation[0].T @ params.light_dir  # camera frame -> world
    albedo = params.part_colours[part_index[hits.face[0][mask]]]
    ndl = n @ light
    half = view + light
    half /= np.maximum(np.linalg.norm(half, axis=1, keepdims=True), 1e-12)
    ndh = np.maximum(np.einsum("ij,ij->i", n, half), 0.0)
    energy = params.light_intensity * np.asarray(params.light_colour)
    diffuse = albedo * (params.ambient + np.maximum(ndl, 0.0)[:, None] * energy)
    spec = params.specular * np.where(ndl > 0, ndh**params.shininess, 0.0)[:, None] * energy
    image[mask] = diffuse + spec
    pixels = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    return PhotoResult(image=pixels, mask=mask, camera=params.camera, params=params)


def render_photo(
    mesh: trimesh.Trimesh,
    face_part: np.ndarray | None,
    rng: np.random.Generator,
    image_size: int = 224,
    camera: np.ndarray | None = None,
    *,
    crop: bool = True,
) -> PhotoResult:
    """Render one random photo-like query of a mesh.

    :func:`sample_photo_params` followed by :func:`compose_photo`.

    Args:
        mesh: the shape, +Y up, any scale.
        face_part: integer part id of every face (faces with the same id share
            a colour), or None for one colour.
        rng: source of every random choice.
        image_size: square image side :math:`S` (224 in CMIC).
        camera: fixed unit camera direction, or None for a random one.
        crop: False disables the random crop, so the mask equals
            ``silhouette(mesh, result.camera, image_size)``.

    Returns:
        :class:`PhotoResult`; ``result.mask`` equals
        ``silhouette(mesh, result.camera, image_size, zoom=result.params.zoom,
        offset=result.params.offset)``.

    Shapes:
        - **face_part**: :math:`[F]`
    """
    part_index = _part_index(mesh, face_part)
    params = sample_photo_params(rng, int(part_index.max()) + 1, camera=camera, crop=crop)
    return compose_photo(mesh, face_part, params, image_size)
