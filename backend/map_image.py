"""The bandwidth map as an SVG image for reports: log (or linear) bandwidth axes with
ticks and labels, one filled colour and letter per partition, and a legend.

Written by hand (no plotting library): regions are paths through their boundaries, which
are straight in 1/bw and so are sampled (`bandwidth_map.curve`) to follow the axes. One
varying link: bands along the bandwidth axis with the best partition's latency over them.
Every label text is escaped; colours are chosen to stay apart in greyscale print, and
each region also carries its legend letter.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from xml.sax.saxutils import escape

from backend.errors import OmdpError
from backend.files import atomic_write, check_writable
from backend.solver.bandwidth_map import BandwidthMap, curve

PALETTE = (
    "#0072b2",
    "#e69f00",
    "#009e73",
    "#cc79a7",
    "#56b4e9",
    "#d55e00",
    "#f0e442",
    "#999999",
    "#004d40",
    "#882255",
    "#a6761d",
    "#332288",
)
WIDTH, PLOT_W, PLOT_H = 1120, 560, 420
LEFT, TOP = 90, 70
FONT = "font-family='DejaVu Sans, Arial, sans-serif'"


def letter(i: int) -> str:
    """A, B, …, Z, AA, AB, …: the legend key of the i-th partition."""
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(65 + r) + out
    return out


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def write_image(
    bmap: BandwidthMap, path: str, title: str, point: Sequence[float] | None = None
) -> None:
    """Write the map to `path` (.svg), whole or not at all; `point` (Mbit/s of the varying
    links) is marked as the operating point when it lies in the box."""
    check_image_path(path)
    atomic_write(path, svg(bmap, title, point).encode("utf-8"))


def check_image_path(path: str) -> None:
    """Refuse, before any work, a path that is not a writable .svg file."""
    if not str(path).lower().endswith(".svg"):
        fix = "use FILE.svg (a browser or `rsvg-convert -o map.png map.svg` makes a PNG)"
        if str(path).lower().endswith(".png"):
            raise OmdpError(
                f"cannot write {path}: PNG needs an image library this install does not have",
                fix,
            )
        raise OmdpError(f"cannot write {path}: the image must be an .svg file", fix)
    check_writable(path, example="map.svg")


def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    if log:
        out = []
        for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
            for m in (1, 2, 5):
                v = m * 10.0**e
                if lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9):
                    out.append(v)
        return out if len(out) >= 2 else [lo, hi]
    step = 10 ** math.floor(math.log10((hi - lo) / 4))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= 8:
            step *= m
            break
    first = math.ceil(lo / step) * step
    return [first + k * step for k in range(int((hi - first) / step) + 1)]


def tick_text(v: float) -> str:
    return f"{v:g}" if v < 1e5 else f"{v:.0e}"


class _Axis:
    """Value ↔ pixels along one axis (log10 or linear)."""

    def __init__(self, lo: float, hi: float, start: float, length: float, log: bool):
        self.lo, self.hi, self.log = lo, hi, log
        self.start, self.length = start, length

    def __call__(self, v: float) -> float:
        if self.log:
            t = math.log10(v / self.lo) / math.log10(self.hi / self.lo)
        else:
            t = (v - self.lo) / (self.hi - self.lo)
        return self.start + t * self.length


def svg(bmap: BandwidthMap, title: str, point: Sequence[float] | None = None) -> str:
    """The SVG text of the map."""
    log = bmap.scale == "log"
    rx = bmap.ranges[0]
    x_axis = _Axis(rx.lo, rx.hi, LEFT, PLOT_W, log)
    parts: list[str] = []
    if len(bmap.ranges) == 2:
        ry = bmap.ranges[1]
        y_axis = _Axis(ry.lo, ry.hi, TOP + PLOT_H, -PLOT_H, log)
        keys = [r.cuts for r in bmap.regions]
        shares = [r.share for r in bmap.regions]
        parts += _regions(bmap, x_axis, y_axis)
        y_label, y_ticks = f"{ry.link} (Mbit/s)", _ticks(ry.lo, ry.hi, log)
        y_fmt = tick_text
    else:
        keys = [b.cuts for b in bmap.bands]
        keys = list(dict.fromkeys(keys))
        total = math.log10(rx.hi / rx.lo) if log else rx.hi - rx.lo
        shares = []
        for k in keys:
            width = sum(
                (math.log10(b.hi / b.lo) if log else b.hi - b.lo) for b in bmap.bands if b.cuts == k
            )
            shares.append(width / total)
        values = [v for b in bmap.bands for v in (b.ms_at_lo, b.ms_at_hi)]
        lo_ms, hi_ms = 0.0, max(values) * 1.08
        y_axis = _Axis(lo_ms, hi_ms, TOP + PLOT_H, -PLOT_H, False)
        parts += _bands(bmap, keys, x_axis, y_axis)
        y_label, y_ticks = f"best {bmap.objective} (ms)", _ticks(max(lo_ms, 1e-9), hi_ms, False)
        y_fmt = tick_text
    parts += _frame(x_axis, y_axis, _ticks(rx.lo, rx.hi, log), y_ticks, y_fmt)
    inside = point is not None and all(
        r.lo <= v <= r.hi for r, v in zip(bmap.ranges, point, strict=True)
    )
    if inside and point is not None:
        parts += _point(point, x_axis, y_axis if len(point) == 2 else None)
    parts.append(
        f"<text x='{LEFT + PLOT_W / 2}' y='{TOP + PLOT_H + 52}' text-anchor='middle' "
        f"font-size='16' {FONT} class='axis-label'>{escape(rx.link)} (Mbit/s)</text>"
    )
    cy = TOP + PLOT_H / 2
    parts.append(
        f"<text x='24' y='{cy}' text-anchor='middle' font-size='16' {FONT} class='axis-label' "
        f"transform='rotate(-90 24 {cy})'>{escape(y_label)}</text>"
    )
    parts.append(
        f"<text x='{LEFT}' y='30' font-size='18' font-weight='bold' {FONT}>{escape(title)}</text>"
    )
    parts.append(f"<text x='{LEFT}' y='52' font-size='13' {FONT}>{escape(_subtitle(bmap))}</text>")
    parts += _legend(bmap, keys, shares, inside)
    height = max(TOP + PLOT_H + 80, 120 + 22 * len(keys))
    return (
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height}' "
        f"viewBox='0 0 {WIDTH} {height}'>\n"
        f"<rect width='{WIDTH}' height='{height}' fill='white'/>\n"
        + "\n".join(parts)
        + "\n</svg>\n"
    )


def _subtitle(bmap: BandwidthMap) -> str:
    exact = "exact breakpoints" if len(bmap.ranges) == 1 else "exact regions"
    how = exact if bmap.exact else bmap.method
    return f"{bmap.objective} objective, {bmap.cost_model} times, {bmap.scale} axes; {how}"


def _regions(bmap: BandwidthMap, x_axis: _Axis, y_axis: _Axis) -> list[str]:
    out = ["<g class='regions'>"]
    if bmap.grid is not None:
        xs, ys = bmap.grid.xs, bmap.grid.ys
        xe = _edges(xs, x_axis)
        ye = _edges(ys, y_axis)
        for j in range(len(ys)):
            row = bmap.grid.labels[j]
            i = 0
            while i < len(xs):
                k = int(row[i])
                start = i
                while i < len(xs) and int(row[i]) == k:
                    i += 1
                if k < 0:
                    continue
                x0, x1 = xe[start], xe[i]
                y0, y1 = sorted((ye[j], ye[j + 1]))
                out.append(
                    f"<rect x='{x0:.2f}' y='{y0:.2f}' width='{x1 - x0:.2f}' "
                    f"height='{y1 - y0:.2f}' fill='{colour(k)}' class='region' "
                    f"data-key='{letter(k)}'/>"
                )
    else:

        def to_pixels(p: Sequence[float]) -> tuple[float, float]:
            return x_axis(p[0]), y_axis(p[1])

        for k, region in enumerate(bmap.regions):
            poly = region.polygon or ()
            points: list[tuple[float, float]] = []
            for p, q in zip(poly, [*poly[1:], poly[0]], strict=True):
                points.extend(to_pixels(v) for v in curve(p, q, _pixel_plot(x_axis, y_axis))[:-1])
            d = "M " + " L ".join(f"{x:.2f} {y:.2f}" for x, y in points) + " Z"
            out.append(
                f"<path d='{d}' fill='{colour(k)}' stroke='white' stroke-width='1.5' "
                f"class='region' data-key='{letter(k)}'/>"
            )
            if region.share > 0.01:
                cx = sum(x for x, _ in points) / len(points)
                cy = sum(y for _, y in points) / len(points)
                out.append(
                    f"<text x='{cx:.1f}' y='{cy + 6:.1f}' text-anchor='middle' font-size='18' "
                    f"font-weight='bold' fill='black' stroke='white' stroke-width='3' "
                    f"paint-order='stroke' {FONT}>{letter(k)}</text>"
                )
    out.append("</g>")
    return out


def _pixel_plot(x_axis: _Axis, y_axis: _Axis) -> Callable[[Sequence[float]], tuple[float, float]]:
    """Pixels scaled to ~1/1000 so `curve`'s 1e-4 tolerance means a tenth of a pixel."""
    return lambda p: (x_axis(p[0]) / 1000, y_axis(p[1]) / 1000)


def _edges(values: Sequence[float], axis: _Axis) -> list[float]:
    px = [axis(v) for v in values]
    mids = [(a + b) / 2 for a, b in itertools.pairwise(px)]
    return [px[0], *mids, px[-1]]


def _bands(bmap: BandwidthMap, keys: list, x_axis: _Axis, y_axis: _Axis) -> list[str]:
    out = ["<g class='regions'>"]
    for band in bmap.bands:
        k = keys.index(band.cuts)
        x0, x1 = x_axis(band.lo), x_axis(band.hi)
        out.append(
            f"<rect x='{x0:.2f}' y='{TOP}' width='{x1 - x0:.2f}' height='{PLOT_H}' "
            f"fill='{colour(k)}' fill-opacity='0.35' class='region' data-key='{letter(k)}'/>"
        )
        if x1 - x0 > 14:
            out.append(
                f"<text x='{(x0 + x1) / 2:.1f}' y='{TOP + 22}' text-anchor='middle' "
                f"font-size='16' font-weight='bold' {FONT}>{letter(k)}</text>"
            )
    out.append("</g>")
    # the best partition's cost across the bands: exact maps are const + slope/bw on each
    # band (two ends give the function back), grid maps are drawn straight between ends
    pts = []
    for band in bmap.bands:
        slope = (band.ms_at_lo - band.ms_at_hi) / (1 / band.lo - 1 / band.hi)
        const = band.ms_at_hi - slope / band.hi
        for t in range(33 if bmap.exact else 2):
            f = t / (32 if bmap.exact else 1)
            log = bmap.scale == "log"
            bw = band.lo * (band.hi / band.lo) ** f if log else band.lo + (band.hi - band.lo) * f
            ms = (
                const + slope / bw
                if bmap.exact
                else band.ms_at_lo + (band.ms_at_hi - band.ms_at_lo) * f
            )
            pts.append(f"{x_axis(bw):.2f},{y_axis(ms):.2f}")
    out.append(
        f"<polyline points='{' '.join(pts)}' fill='none' stroke='black' stroke-width='2' "
        f"class='optimum'/>"
    )
    return out


def _frame(
    x_axis: _Axis,
    y_axis: _Axis,
    x_ticks: list[float],
    y_ticks: list[float],
    y_fmt: Callable[[float], str],
) -> list[str]:
    bottom = TOP + PLOT_H
    out = [
        f"<g class='axes' stroke='black' font-size='13' {FONT}>",
        f"<rect x='{LEFT}' y='{TOP}' width='{PLOT_W}' height='{PLOT_H}' fill='none' "
        "stroke='black' stroke-width='1.5' class='frame'/>",
    ]
    for v in x_ticks:
        x = x_axis(v)
        out.append(f"<line x1='{x:.2f}' y1='{bottom}' x2='{x:.2f}' y2='{bottom + 6}'/>")
        out.append(
            f"<text x='{x:.2f}' y='{bottom + 22}' text-anchor='middle' stroke='none' "
            f"class='tick'>{tick_text(v)}</text>"
        )
    for v in y_ticks:
        y = y_axis(v)
        out.append(f"<line x1='{LEFT - 6}' y1='{y:.2f}' x2='{LEFT}' y2='{y:.2f}'/>")
        out.append(
            f"<text x='{LEFT - 10}' y='{y + 4:.2f}' text-anchor='end' stroke='none' "
            f"class='tick'>{y_fmt(v)}</text>"
        )
    out.append("</g>")
    return out


def _point(point: Sequence[float], x_axis: _Axis, y_axis: _Axis | None) -> list[str]:
    """The operating point: a diamond (two links) or a dashed line (one link)."""
    x = x_axis(point[0])
    if y_axis is None:
        return [
            f"<line x1='{x:.2f}' y1='{TOP}' x2='{x:.2f}' y2='{TOP + PLOT_H}' stroke='black' "
            "stroke-width='2' stroke-dasharray='6 4' class='now'/>",
            f"<text x='{x + 4:.2f}' y='{TOP + PLOT_H - 8}' font-size='13' {FONT}>now</text>",
        ]
    y = y_axis(point[1])
    return [
        f"<path d='M {x:.2f} {y - 8:.2f} L {x + 8:.2f} {y:.2f} L {x:.2f} {y + 8:.2f} "
        f"L {x - 8:.2f} {y:.2f} Z' fill='black' stroke='white' stroke-width='1.5' class='now'/>",
        f"<text x='{x + 11:.2f}' y='{y + 4:.2f}' font-size='13' font-weight='bold' "
        f"fill='black' stroke='white' stroke-width='3' paint-order='stroke' {FONT}>now</text>",
    ]


def _legend(bmap: BandwidthMap, keys: list, shares: list[float], now: bool) -> list[str]:
    x = LEFT + PLOT_W + 24
    out = [
        "<g class='legend'>",
        f"<text x='{x}' y='{TOP + 4}' font-size='14' font-weight='bold' {FONT}>"
        "best partition (share of the map)</text>",
    ]
    for k, (cuts, share) in enumerate(zip(keys, shares, strict=True)):
        y = TOP + 18 + 22 * k
        out.append(
            f"<rect x='{x}' y='{y}' width='16' height='16' fill='{colour(k)}' stroke='black' "
            f"stroke-width='0.5'/>"
        )
        pct = f"{100 * share:.2g}%" if 0 < share < 0.001 else f"{100 * share:.1f}%"
        text = f"{letter(k)}  {bmap.describe(cuts)}  {pct}"
        out.append(f"<text x='{x + 22}' y='{y + 13}' font-size='12' {FONT}>{escape(text)}</text>")
    if now:
        y = TOP + 18 + 22 * len(keys) + 8
        out.append(
            f"<text x='{x}' y='{y + 13}' font-size='12' {FONT}>"
            "now: the link values the ranking uses today</text>"
        )
    out.append("</g>")
    return out
