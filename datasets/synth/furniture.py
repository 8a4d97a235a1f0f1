"""The ``synth`` furniture designs: chair, stool, bench, sofa, bed, table, shelf.

Used through :data:`ssl3d.datasets.synth.builders.BUILDERS`. Each builder draws
a design from the :class:`~ssl3d.datasets.synth.parts.Assembler`'s random stream
and adds its labelled primitives; the order of draws is part of the generator's
output, so any change here needs a ``SYNTH_VERSION`` bump.
"""

from __future__ import annotations

import numpy as np

import ssl3d.datasets.synth.parts as P
from ssl3d.datasets.synth.parts import Assembler


# ------------------------------------------------------------------ furniture
def _armchair(a: Assembler) -> None:
    """Upholstered chair: sofa-like blocks on short legs."""
    w, d, lh, sh = a.u(0.6, 0.9), a.u(0.6, 0.85), a.u(0.04, 0.15), a.u(0.38, 0.46)
    bt, aw = a.u(0.12, 0.22), a.u(0.08, 0.18) if a.chance(0.8) else 0.0
    a.add("seat", P.box((w, sh - lh, d), (0, (sh + lh) / 2, 0)))
    bh = a.u(0.3, 0.55)
    a.add("back", P.tilt_x(P.box((w, bh, bt), (0, sh + bh / 2, -d / 2 + bt / 2)), a.u(0, 0.2), (0, sh, -d / 2)))
    a.legs("leg", P.rect_feet(w / 2 - 0.05, d / 2 - 0.05), lh + 0.01, a.u(0.02, 0.035), a.chance(0.5), a.u(0, 0.2))
    if aw > 0:
        ah = a.u(0.15, 0.25)
        for sx in (-1, 1):
            a.add("arm", P.box((aw, sh + ah - lh, d), (sx * (w / 2 + aw / 2), (sh + ah + lh) / 2, 0)))


def chair(a: Assembler) -> None:
    if a.chance(0.15):
        return _armchair(a)
    w, d, t = a.u(0.40, 0.58), a.u(0.38, 0.56), a.u(0.03, 0.09)
    h = a.u(0.6, 0.78) if a.chance(0.15) else a.u(0.38, 0.52)  # bar/counter chairs rival bar stools
    if a.chance(0.25):
        a.add("seat", P.cylinder((0, h - t, 0), (0, h, 0), (w + d) / 4, 20))
    else:
        a.add("seat", P.box((w, t, d), (0, h - t / 2, 0)))
    style = a.pick(("four", "three", "pedestal", "panel"), (0.6, 0.1, 0.18, 0.12))
    lt, inset = a.u(0.014, 0.035), a.u(0.02, 0.06)
    if style == "four":
        a.legs("leg", P.rect_feet(w / 2 - inset, d / 2 - inset), h - t, lt, a.chance(0.5), a.u(0.0, 0.1))
    elif style == "three":
        a.legs("leg", P.circle_feet(w / 2 - inset, d / 2 - inset, 3, np.pi / 2), h - t, lt, False, a.u(0.0, 0.15))
    elif style == "pedestal":
        a.pedestal("leg", h - t, a.u(0.02, 0.04), a.u(0.22, 0.32), a.pick((4, 5), (0.3, 0.7)), a.u(0.02, 0.04))
    else:
        pt = a.u(0.015, 0.04)
        for sx in (-1, 1):
            a.add("leg", P.box((pt, h - t, d * a.u(0.7, 1.0)), (sx * (w / 2 - inset), (h - t) / 2, 0)))
    bh, bt, bw, lean = a.u(0.15, 0.62), a.u(0.02, 0.07), w * a.u(0.75, 1.0), a.u(0.0, 0.3)
    pivot = (0, h, -d / 2 + bt / 2)
    back = a.pick(("panel", "slats", "ladder"), (0.55, 0.25, 0.2))
    if back == "panel":
        a.add("back", P.tilt_x(P.box((bw, bh, bt), (0, h + bh / 2, pivot[2])), lean, pivot))
        return _chair_arms(a, w, d, h)
    pr = a.u(0.012, 0.025)
    for sx in (-1, 1):
        post = P.cylinder((sx * bw / 2, h - t, pivot[2]), (sx * bw / 2, h + bh, pivot[2]), pr)
        a.add("back", P.tilt_x(post, lean, pivot))
    rails = int(a.rng.integers(3, 6)) if back == "slats" else int(a.rng.integers(2, 4))
    for k in range(rails):
        if back == "slats":
            x = -bw / 2 + bw * (k + 1) / (rails + 1)
            prim = P.box((a.u(0.02, 0.05), bh * 0.8, bt * 0.6), (x, h + bh * 0.5, pivot[2]))
        else:
            prim = P.box((bw, a.u(0.03, 0.08), bt * 0.6), (0, h + bh * (k + 1) / rails - 0.04, pivot[2]))
        a.add("back", P.tilt_x(prim, lean, pivot))
    _chair_arms(a, w, d, h)


def _chair_arms(a: Assembler, w: float, d: float, h: float) -> None:
    if not a.chance(0.35):
        return
    ah, aw = a.u(0.16, 0.26), a.u(0.03, 0.07)
    for sx in (-1, 1):
        x = sx * (w / 2 - aw / 2)
        a.add("arm", P.box((aw, a.u(0.02, 0.05), d * a.u(0.7, 0.95)), (x, h + ah, -d * 0.05)))
        a.add("arm", P.cylinder((x, h - 0.01, d * 0.3), (x, h + ah, d * 0.3), a.u(0.01, 0.02)), anchor=(x, h, d * 0.3))


def stool(a: Assembler) -> None:
    h, t, lt = a.u(0.42, 0.8), a.u(0.025, 0.08), a.u(0.014, 0.03)
    round_seat = a.chance(0.55)
    r = a.u(0.14, 0.22)
    if a.chance(0.12):  # upholstered ottoman: thick cushion on short legs, sofa-like
        t, r = a.u(0.15, 0.3), a.u(0.18, 0.3)
        h = t + a.u(0.04, 0.15)
    if round_seat:
        a.add("seat", P.cylinder((0, h - t, 0), (0, h, 0), r, 20))
    else:
        a.add("seat", P.box((2 * r, t, 2 * r), (0, h - t / 2, 0)))
    style = a.pick(("three", "four", "pedestal"), (0.35, 0.45, 0.2)) if t < 0.1 else "four"
    if style == "pedestal":
        a.pedestal("leg", h - t, a.u(0.025, 0.05), a.u(0.15, 0.25), a.pick((0, 4), (0.6, 0.4)), a.u(0.02, 0.04))
        if a.chance(0.5):
            a.add("footrest", P.ring(a.u(0.1, 0.16), a.u(0.008, 0.015), (0, (h - t) * a.u(0.25, 0.45), 0)))
        return
    n = 3 if style == "three" else 4
    rl, splay = r * a.u(0.6, 0.85), a.u(0.0, 0.15)
    feet = P.circle_feet(rl, rl, n, np.pi / 4)
    a.legs("leg", feet, h - t, lt, a.chance(0.4), splay)
    if t < 0.1 and a.chance(0.5):
        yf = (h - t) * a.u(0.25, 0.45)
        rr = rl + (h - t - yf) * np.tan(splay)  # leg distance from the axis at the footrest height
        if a.chance(0.5):
            a.add("footrest", P.ring(rr, a.u(0.008, 0.015), (0, yf, 0)))
        else:
            pts = [np.array([x, yf, z]) * np.array([rr / rl, 1, rr / rl]) for x, z in feet]
            for p0, p1 in zip(pts, pts[1:] + pts[:1]):
                a.add("footrest", P.cylinder(p0, p1, lt * 0.7))


def bench(a: Assembler) -> None:
    w, d, h, t = a.u(0.9, 2.0), a.u(0.3, 0.5), a.u(0.38, 0.5), a.u(0.03, 0.08)
    if a.chance(0.3):
        n = int(a.rng.integers(3, 6))
        for k in range(n):
            a.add("seat", P.box((w, t, d / n * 0.8), (0, h - t / 2, -d / 2 + d * (k + 0.5) / n)))
    else:
        a.add("seat", P.box((w, t, d), (0, h - t / 2, 0)))
    style = a.pick(("four", "six", "panel"), (0.45, 0.2, 0.35))
    inset, lt = a.u(0.03, 0.15), a.u(0.02, 0.04)
    if style == "panel":
        for sx in (-1, 1):
            a.add("leg", P.box((a.u(0.03, 0.07), h - t, d * a.u(0.8, 1.0)), (sx * (w / 2 - inset), (h - t) / 2, 0)))
    else:
        n = 6 if style == "six" else 4
        a.legs("leg", P.rect_feet(w / 2 - inset, d / 2 - 0.03, n), h - t, lt, a.chance(0.6), a.u(0.0, 0.08))
    if not a.chance(0.4):
        return
    bh, lean, zb = a.u(0.3, 0.5), a.u(0.0, 0.3), -d / 2 + 0.02
    for sx in (-1, 1):
        post = P.box((0.04, bh + t, 0.04), (sx * (w / 2 - inset), h - t + (bh + t) / 2, zb))
        a.add("back", P.tilt_x(post, lean, (0, h, zb)))
    for k in range(int(a.rng.integers(1, 4))):
        rail = P.box((w * 0.98, a.u(0.05, 0.12), 0.025), (0, h + bh * (1 - 0.3 * k) - 0.05, zb))
        a.add("back", P.tilt_x(rail, lean, (0, h, zb)))
    if a.chance(0.4):
        for sx in (-1, 1):
            a.add("arm", P.box((0.05, a.u(0.2, 0.3), d * 0.9), (sx * (w / 2 - 0.03), h + 0.1, 0)))


def sofa(a: Assembler) -> None:
    w, d = a.u(1.2, 2.4), a.u(0.75, 1.0)
    lh = a.u(0.05, 0.15) if a.chance(0.6) else 0.0
    bh, ct = a.u(0.15, 0.3), a.u(0.08, 0.18)
    aw = a.u(0.1, 0.25) if a.chance(0.85) else 0.0
    bt = a.u(0.15, 0.3)
    a.add("seat", P.box((w, bh, d), (0, lh + bh / 2, 0)))
    n = int(a.rng.integers(1, 4))
    cw = (w - 2 * aw) / n
    for k in range(n):
        a.add("seat", P.box((cw * 0.97, ct, d - bt), (-w / 2 + aw + cw * (k + 0.5), lh + bh + ct / 2, bt / 2)))
    if a.chance(0.15):
        a.add("seat", P.box((cw, bh + ct, a.u(0.5, 0.8)), (w / 2 - aw - cw / 2, lh + (bh + ct) / 2, d / 2 + 0.3)))
    top = a.u(0.7, 1.0)
    back = P.box((w, top - lh - bh, bt), (0, (top + lh + bh) / 2, -d / 2 + bt / 2))
    a.add("back", P.tilt_x(back, a.u(0, 0.2), (0, lh + bh, -d / 2 + bt / 2)))
    if aw > 0:
        ah = a.u(0.5, 0.72)
        for sx in (-1, 1):
            a.add("arm", P.box((aw, ah - lh, d), (sx * (w / 2 - aw / 2), lh + (ah - lh) / 2, 0)))
            if a.chance(0.3):  # rolled arm top
                x = sx * (w / 2 - aw / 2)
                a.add("arm", P.cylinder((x, ah, -d / 2), (x, ah, d / 2), aw * 0.6, 12))
    if lh > 0:
        feet = P.rect_feet(w / 2 - 0.06, d / 2 - 0.06, 6 if w > 2.0 else 4)
        a.legs("leg", feet, lh + 0.01, a.u(0.02, 0.04), a.chance(0.5))


def bed(a: Assembler) -> None:
    ln, w = a.u(1.9, 2.2), a.u(0.9, 2.0)
    lh = a.u(0.08, 0.25) if a.chance(0.6) else 0.0
    fh, mt = a.u(0.12, 0.3), a.u(0.15, 0.3)
    a.add("frame", P.box((w, fh, ln), (0, lh + fh / 2, 0)))
    a.add("mattress", P.box((w - 0.04, mt, ln - 0.04), (0, lh + fh + mt / 2 - 0.01, 0)))
    ht, hh = a.u(0.04, 0.1), a.u(0.8, 1.3)
    if a.chance(0.92):
        a.add("headboard", P.box((w + a.u(0.0, 0.1), hh, ht), (0, hh / 2, -ln / 2 - ht / 2)))
    if a.chance(0.45):
        fbh = a.u(0.4, min(0.7, hh))
        a.add("footboard", P.box((w, fbh, ht), (0, fbh / 2, ln / 2 + ht / 2)))
    if lh > 0:
        feet = P.rect_feet(w / 2 - 0.05, ln / 2 - 0.05, 6 if a.chance(0.3) else 4)
        a.legs("leg", feet, lh + 0.01, a.u(0.025, 0.05), a.chance(0.6))
    n = a.pick((0, 1, 2), (0.3, 0.3, 0.4))
    pr = (w / (2 * max(n, 1)) * a.u(0.6, 0.85), a.u(0.04, 0.08), a.u(0.12, 0.2))
    for k in range(n):
        x = -w / 2 + w * (k + 0.5) / n
        a.add("pillow", P.ellipsoid(pr, (x, lh + fh + mt + pr[1] * 0.6, -ln / 2 + pr[2] + 0.05)))


def table(a: Assembler) -> None:
    h = a.u(0.35, 0.5) if a.chance(0.3) else a.u(0.68, 0.8)
    t, round_top = a.u(0.02, 0.06), a.chance(0.3)
    w = a.u(0.6, 1.3) if round_top else a.u(0.6, 1.8)
    d = w if round_top else a.u(0.5, min(1.0, w))
    if a.chance(0.15):  # side table: stool-sized
        h, w = a.u(0.45, 0.7), a.u(0.35, 0.6)
        d = w if round_top else w * a.u(0.7, 1.0)
    if round_top:
        a.add("top", P.cylinder((0, h - t, 0), (0, h, 0), w / 2, 24))
        style = a.pick(("pedestal", "three", "four"), (0.5, 0.25, 0.25))
    else:
        a.add("top", P.box((w, t, d), (0, h - t / 2, 0)))
        style = a.pick(("four", "six", "panel", "pedestal"), (0.6, 0.1, 0.2, 0.1))
    inset, lt = a.u(0.03, 0.1), a.u(0.02, 0.045)
    hw, hd = w / 2 - inset, d / 2 - inset
    if round_top and style != "pedestal":
        hw = hd = w / 2 * 0.7
        feet = P.circle_feet(hw, hd, 3 if style == "three" else 4, np.pi / 4)
    else:
        feet = P.rect_feet(hw, hd, 6 if style == "six" else 4)
    if style == "pedestal":
        feet_n = a.pick((0, 3, 4), (0.5, 0.2, 0.3))
        a.pedestal("leg", h - t, a.u(0.04, 0.08), a.u(0.2, 0.4) * w, feet_n, a.u(0.03, 0.06))
    elif style == "panel":
        for sx in (-1, 1):
            a.add("leg", P.box((a.u(0.02, 0.05), h - t, d * a.u(0.7, 1.0)), (sx * hw, (h - t) / 2, 0)))
    else:
        a.legs("leg", feet, h - t, lt, a.chance(0.5), a.u(0.0, 0.06))
    kind = a.pick(("none", "apron", "shelf", "rails"), (0.5, 0.2, 0.2, 0.1))
    if kind == "apron" and not round_top:
        ah = a.u(0.05, 0.12)
        for sx in (-1, 1):
            a.add("stretcher", P.box((0.02, ah, 2 * hd), (sx * hw, h - t - ah / 2, 0)))
            a.add("stretcher", P.box((2 * hw, ah, 0.02), (0, h - t - ah / 2, sx * hd)))
    elif kind == "shelf" and style != "pedestal":
        a.add("stretcher", P.box((2 * hw, a.u(0.015, 0.03), 2 * hd), (0, (h - t) * a.u(0.1, 0.35), 0)))
    elif kind == "rails" and style not in ("pedestal", "panel"):
        y = (h - t) * a.u(0.1, 0.3)
        for (x0, z0), (x1, z1) in zip(feet, feet[1:] + feet[:1]):
            a.add("stretcher", P.cylinder((x0, y, z0), (x1, y, z1), lt * 0.6))
    if not round_top and a.chance(0.25):
        dw, dh = w * a.u(0.25, 0.4), (h - t) if a.chance(0.4) else a.u(0.12, 0.2)
        a.add("drawer", P.box((dw, dh, d * 0.9), (w / 2 - inset - dw / 2, h - t - dh / 2, 0)))


def shelf(a: Assembler) -> None:
    w, d = a.u(0.5, 1.5), a.u(0.25, 0.45)
    h = a.u(0.4, 0.9) if a.chance(0.35) else a.u(0.9, 2.0)
    n = int(np.clip(round(h / a.u(0.25, 0.45)) + 1, 2, 6))
    bt, gap = a.u(0.015, 0.04), a.u(0.0, 0.12)
    for y in np.linspace(gap + bt / 2, h - bt / 2, n):
        a.add("board", P.box((w, bt, d), (0, y, 0)))
    if a.chance(0.7):
        st = a.u(0.015, 0.04)
        for sx in (-1, 1):
            a.add("side", P.box((st, h, d), (sx * (w / 2 + st / 2), h / 2, 0)))
    else:
        a.legs("side", P.rect_feet(w / 2 - 0.02, d / 2 - 0.02), h, a.u(0.012, 0.025), a.chance(0.5))
    if a.chance(0.6):
        a.add("back", P.box((w, h - gap, 0.01), (0, (h + gap) / 2, -d / 2 - 0.005)))
    if a.chance(0.25):
        a.add("divider", P.box((bt, h - gap, d * 0.98), (w * a.u(-0.2, 0.2), (h + gap) / 2, 0)))
