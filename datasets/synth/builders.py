"""The twelve ``synth`` category designs: one builder per category (see :mod:`ssl3d.datasets.synth.shapes`).

The furniture designs live in :mod:`ssl3d.datasets.synth.furniture`; lamps,
vessels and vehicles are here.

Each builder draws a design from the :class:`~ssl3d.datasets.synth.parts.Assembler`'s
random stream and adds its labelled primitives; the order of draws is part of
the generator's output, so any change here needs a ``SYNTH_VERSION`` bump.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

import ssl3d.datasets.synth.parts as P
from ssl3d.datasets.synth.furniture import bed, bench, chair, shelf, sofa, stool, table
from ssl3d.datasets.synth.parts import Assembler


# ------------------------------------------------------------ lamps, vessels
def _lamp(a: Assembler) -> None:
    kind = a.pick(("desk", "floor", "table"), (0.4, 0.35, 0.25))
    rb, tb = a.u(0.07, 0.2), a.u(0.015, 0.05)
    if kind == "table":
        hb = a.u(0.2, 0.45)
        rb = a.u(0.06, 0.13)
        prof = [(0, 0), (rb * 0.6, 0), (rb, hb * a.u(0.3, 0.6)), (rb * a.u(0.3, 0.6), hb), (0, hb)]
        a.add("base", P.lathe(prof, 16))
        top, tip = hb, np.array([0.0, hb + a.u(0.05, 0.15), 0.0])
        a.add("stem", P.cylinder((0, top - 0.01, 0), tip, a.u(0.008, 0.015)))
    else:
        if a.chance(0.3):
            a.add("base", P.box((2 * rb, tb, 2 * rb * a.u(0.6, 1.0)), (0, tb / 2, 0)))
        else:
            a.add("base", P.cylinder((0, 0, 0), (0, tb, 0), rb, 20))
        sr = a.u(0.008, 0.02)
        tip = np.array([0.0, a.u(0.25, 0.55) if kind == "desk" else a.u(1.1, 1.7), 0.0])
        if kind == "desk" and a.chance(0.5):
            elbow = np.array([0.0, a.u(0.25, 0.45), -a.u(0.0, 0.15)])
            tip = elbow + np.array([0.0, a.u(-0.05, 0.15), a.u(0.2, 0.4)])
            a.add("stem", P.cylinder((0, tb, 0), elbow, sr), anchor=(0, tb, 0))
            a.add("stem", P.cylinder(elbow, tip, sr), anchor=elbow)
        else:
            a.add("stem", P.cylinder((0, tb, 0), tip, sr), anchor=(0, tb, 0))
    shade = a.pick(("cone", "drum", "dome", "globe"), (0.4, 0.25, 0.2, 0.15))
    r1 = a.u(0.08, 0.16) if kind == "desk" else a.u(0.12, 0.25)
    sh = r1 * a.u(0.7, 1.5)
    if shade == "globe":
        a.add("shade", P.ellipsoid((r1 * 0.8, r1 * a.u(0.6, 0.9), r1 * 0.8), tip, 2))
        return
    if shade == "dome":
        prof = [(0.0, sh)] + [(r1 * np.sin(s), sh * np.cos(s)) for s in np.linspace(np.pi / 8, np.pi / 2, 4)]
        a.add("shade", P.transform(P.lathe(prof + [(0.0, 0.0)], 16), None, tip - np.array([0.0, sh * 0.5, 0.0])))
        return
    r0 = r1 * (a.u(0.35, 0.8) if shade == "cone" else a.u(0.9, 1.0))
    base = tip - np.array([0.0, sh * a.u(0.3, 0.7), 0.0])
    a.add("shade", P.frustum(base, base + np.array([0.0, sh, 0.0]), r1, r0, 16))


def _mug(a: Assembler) -> None:
    r0 = a.u(0.035, 0.055)
    h, r1 = 2 * r0 * a.u(0.7, 2.0), r0 * a.u(0.85, 1.3)
    mid = max(r0, r1) * a.u(1.0, 1.12) if a.chance(0.3) else (r0 + r1) / 2  # barrel belly or straight
    wt, bot = a.u(0.003, 0.007), a.u(0.004, 0.01)
    prof = [(0, 0), (r0 - 0.003, 0), (r0, 0.003), (mid, h / 2), (r1, h)]
    if a.chance(0.15):  # travel mug: a lid closes the top, bottle-like
        prof += [(r1 * 0.9, h * 1.06), (0, h * 1.06)]
    else:
        prof += [(r1 - wt, h), (mid - wt, h / 2), (r0 - wt, bot), (0, bot)]
    a.add("body", P.lathe(prof, 20))
    if a.chance(0.85):
        hh = h * a.u(0.45, 0.75)
        a.handle("handle", mid, h * a.u(0.45, 0.55), hh, hh * a.u(0.35, 0.6), h * a.u(0.04, 0.08))


def _bottle(a: Assembler) -> None:
    r = a.u(0.03, 0.06)
    if a.chance(0.3):  # squat jar: wide, short neck, mug-like proportions
        hb, rn, hs, hn = r * a.u(1.0, 2.2), r * a.u(0.6, 0.85), r * a.u(0.1, 0.3), r * a.u(0.1, 0.4)
    else:
        hb, rn, hs, hn = r * a.u(2.0, 6.0), r * a.u(0.25, 0.5), r * a.u(0.3, 1.5), r * a.u(0.5, 3.0)
    curve = np.cos if a.chance(0.6) else (lambda s: 1 - 2 * s / np.pi)  # rounded or conical shoulder
    prof = [(0, 0), (r * 0.9, 0), (r, r * 0.1), (r, hb)]
    prof += [(rn + (r - rn) * curve(s), hb + hs * s / (np.pi / 2)) for s in np.linspace(np.pi / 8, np.pi / 2, 4)]
    a.add("body", P.lathe(prof + [(0, hb + hs)], 20))
    y0, y1, lip = hb + hs - 0.002, hb + hs + hn, rn * a.u(1.0, 1.2)
    a.add("neck", P.lathe([(0, y0), (rn, y0), (rn, y1), (lip, y1 + 0.001), (lip, y1 + 0.006), (0, y1 + 0.006)], 16))
    if a.chance(0.7):
        ch = rn * a.u(0.6, 2.0)
        a.add("cap", P.cylinder((0, y1 - ch * 0.5, 0), (0, y1 + ch * 0.5, 0), lip * a.u(1.05, 1.3), 16))
    if a.chance(0.1):
        hh = hb * a.u(0.4, 0.6)
        a.handle("handle", r, hb * 0.6, hh, hh * a.u(0.35, 0.6), r * a.u(0.1, 0.2))


# ------------------------------------------------------------------- vehicles
def _airplane(a: Assembler) -> None:
    rf = a.u(0.035, 0.075)
    nose, tail = a.u(0.06, 0.18), a.u(0.15, 0.3)
    prof = [(0, -0.5), (rf * a.u(0.15, 0.4), -0.5 + 0.01), (rf, -0.5 + tail), (rf, 0.5 - nose),
            (rf * 0.7, 0.5 - nose * 0.3), (0, 0.5)]
    a.add("body", P.transform(P.lathe(prof, 16), P.rotation("x", np.pi / 2)))
    span, cr, taper = a.u(0.6, 1.2), a.u(0.12, 0.28), a.u(0.25, 0.9)
    sweep, zw, yw = a.u(0.0, 0.6), a.u(-0.05, 0.15), rf * a.u(-0.7, 0.7)
    if a.chance(0.15):  # delta wing: short span, long root chord, strong sweep
        span, cr, taper, sweep, zw = a.u(0.4, 0.7), a.u(0.35, 0.55), a.u(0.05, 0.2), a.u(0.7, 1.0), a.u(-0.2, 0.0)
    dihedral, wt = a.u(0.0, 0.1), a.u(0.01, 0.03)
    zt = zw + cr / 2 - span / 2 * np.tan(sweep)  # tip leading edge
    for sx in (-1, 1):
        poly = [(0, zw + cr / 2), (sx * span / 2, zt), (sx * span / 2, zt - cr * taper), (0, zw - cr / 2)]
        wing = P.prism(poly, wt, "y", yw)
        pivot = np.array([0.0, yw, 0.0])
        a.add("wing", ((wing[0] - pivot) @ P.rotation("z", sx * dihedral).T + pivot, wing[1]), anchor=(0, yw, zw))
    hf, cf, ts = a.u(0.1, 0.2), a.u(0.1, 0.2), a.u(0.1, 0.6)
    z0 = -0.5 + 0.02
    fin = [(z0, 0.0), (z0 + cf, 0.0), (z0 + cf * 0.4 + hf * ts, hf), (z0 + hf * ts, hf)]
    a.add("tail", P.prism(fin, a.u(0.008, 0.02), "x"), anchor=(0, 0, z0))
    hs, hc, yh = a.u(0.25, 0.45), a.u(0.06, 0.14), (hf if a.chance(0.2) else rf * 0.3)
    for sx in (-1, 1):
        poly = [(0, z0 + hc), (sx * hs / 2, z0 + hc * 0.5), (sx * hs / 2, z0 + hc * 0.1), (0, z0)]
        a.add("tail", P.prism(poly, 0.01, "y", yh), anchor=(0, yh, z0))
    n = a.pick((0, 2, 4, -2), (0.2, 0.5, 0.15, 0.15))
    re, le = a.u(0.02, 0.04), a.u(0.1, 0.2)
    for k in range(abs(n)):
        sx = -1 if k % 2 else 1
        if n < 0:  # rear-mounted on the fuselage
            c = np.array([sx * (rf + re), rf * 0.3, -0.25])
        else:
            frac = (0.3, 0.6)[k // 2]
            x = sx * span / 2 * frac
            c = np.array([x, yw - re - wt, zw + cr / 2 - abs(x) * np.tan(sweep) + le * 0.3])
        a.add("engine", P.cylinder(c - (0, 0, le / 2), c + (0, 0, le / 2), re, 12))


def _car(a: Assembler) -> None:
    wd, rw, ww = a.u(0.38, 0.5), a.u(0.065, 0.11), a.u(0.04, 0.07)
    y0 = rw * a.u(0.4, 0.7)
    y1 = y0 + a.u(0.1, 0.22)
    hb, cf, cr = y1 - y0, a.u(0.05, 0.15), a.u(0.02, 0.1)
    side = [(-0.47, y0), (0.47, y0), (0.5, y0 + hb * 0.45), (0.5 - cf, y1), (-0.5 + cr, y1), (-0.5, y0 + hb * 0.5)]
    a.add("body", P.prism(side, wd, "x"))
    kind = a.pick(("sedan", "hatch", "van", "pickup", "convertible"), (0.35, 0.25, 0.15, 0.15, 0.1))
    # cabin rear/front z and height; every row is drawn, so the draw count does not depend on the kind
    zr, zf, hc = {"sedan": (a.u(-0.35, -0.2), a.u(0.05, 0.2), a.u(0.1, 0.18)),
                  "hatch": (-0.47, a.u(0.05, 0.2), a.u(0.12, 0.22)),
                  "van": (-0.48, a.u(0.3, 0.42), a.u(0.18, 0.28)),
                  "pickup": (a.u(-0.15, -0.05), a.u(0.15, 0.25), a.u(0.12, 0.2)),
                  "convertible": (0.0, 0.0, 0.0)}[kind]
    if kind != "convertible":
        ws, rs = (zf - zr) * a.u(0.1, 0.3), (zf - zr) * a.u(0.05, 0.3)
        cab = [(zr, y1 - 0.01), (zf, y1 - 0.01), (zf - ws, y1 + hc), (zr + rs, y1 + hc)]
        a.add("cabin", P.prism(cab, wd * a.u(0.8, 0.95), "x"))
    axles = [0.5 - a.u(0.15, 0.22), -0.5 + a.u(0.15, 0.22)]
    if a.chance(0.15):
        axles.append(axles[1] + 2.2 * rw)
    for z in axles:
        for sx in (-1, 1):
            a.add("wheel", P.cylinder((sx * (wd / 2 - ww * 0.3), rw, z), (sx * (wd / 2 + ww * 0.7), rw, z), rw, 16))
    if kind in ("sedan", "pickup", "convertible") and a.chance(0.3):
        ys = y1 + a.u(0.04, 0.08)
        a.add("spoiler", P.box((wd * 0.9, 0.015, a.u(0.06, 0.1)), (0, ys, -0.45)))
        for sx in (-1, 1):
            a.add("spoiler", P.box((0.015, ys - y1 + 0.01, 0.03), (sx * wd * 0.3, (ys + y1) / 2, -0.45)))


BUILDERS: dict[str, Callable[[Assembler], None]] = {
    "chair": chair, "stool": stool, "bench": bench, "sofa": sofa, "bed": bed, "table": table,
    "shelf": shelf, "lamp": _lamp, "mug": _mug, "bottle": _bottle, "airplane": _airplane, "car": _car,
}
