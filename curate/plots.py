"""Inline SVG plots for `report.html`: every plot has labelled axes with ticks.

Plain functions returning an SVG string; no plotting library, so the report stays one
self-contained file and the framework needs no matplotlib.
"""

from __future__ import annotations

import html
import math

BLUE, RED, GREY, GREEN = "#4a7fb5", "#d0553b", "#888", "#5a9a5a"
_FONT = "font-family='system-ui,sans-serif' font-size='11'"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [lo, hi] (1, 2, 2.5 or 5 times a power of ten)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step + 1e-9) * step
    ticks, t = [], first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    if ticks[-1] < hi - step * 1e-9:
        ticks.append(round(t, 12))
    return ticks


def fmt_tick(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:g}M"
    if a >= 1e4:
        return f"{v / 1e3:g}k"
    if a >= 1:
        return f"{v:,.4g}"
    return f"{v:.3g}"


def _short(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _esc(s) -> str:
    return html.escape(str(s))


def hbars(items: list[tuple[str, list[float]]], series: list[str], x_label: str, vmax: float | None = None,
          colors: tuple[str, ...] = (BLUE, GREEN), value_fmt=None, width: int = 760) -> str:
    """Horizontal bars, one group per item (a bar per series), with an x axis (ticks, gridlines, label)
    and a legend when there is more than one series. `value_fmt(v)` labels each bar's end."""
    if not items:
        return "<p>(nothing to plot)</p>"
    value_fmt = value_fmt or fmt_tick
    nser = len(series)
    bar_h, gap = 14, 8
    label_w, right, top = 300, 80, 22 if nser > 1 else 6
    group_h = nser * bar_h + gap
    plot_w = width - label_w - right
    height = top + len(items) * group_h + 40
    top_v = vmax if vmax else max([v for _, vs in items for v in vs] + [0]) or 1.0
    ticks = nice_ticks(0, top_v)
    scale = plot_w / ticks[-1]
    axis_y = top + len(items) * group_h
    out = [f"<svg width='{width}' height='{height}' xmlns='http://www.w3.org/2000/svg' {_FONT}>"]
    for t in ticks:
        x = label_w + t * scale
        out.append(f"<line x1='{x:.1f}' y1='{top}' x2='{x:.1f}' y2='{axis_y}' stroke='#e4e4e4'/>"
                   f"<line x1='{x:.1f}' y1='{axis_y}' x2='{x:.1f}' y2='{axis_y + 4}' stroke='{GREY}'/>"
                   f"<text x='{x:.1f}' y='{axis_y + 15}' text-anchor='middle'>{fmt_tick(t)}</text>")
    for i, (label, values) in enumerate(items):
        y0 = top + i * group_h
        out.append(f"<text x='{label_w - 6}' y='{y0 + nser * bar_h / 2 + 4:.1f}' text-anchor='end'>"
                   f"{_esc(_short(str(label), 46))}</text>")
        for j, v in enumerate(values):
            w = max(0.0, v * scale)
            y = y0 + j * bar_h
            color = colors[j % len(colors)]
            out.append(f"<rect x='{label_w}' y='{y}' width='{w:.1f}' height='{bar_h - 2}' fill='{color}'/>"
                       f"<text x='{label_w + w + 4:.1f}' y='{y + bar_h - 4}'>{_esc(value_fmt(v))}</text>")
    out.append(f"<line x1='{label_w}' y1='{top}' x2='{label_w}' y2='{axis_y}' stroke='{GREY}'/>"
               f"<line x1='{label_w}' y1='{axis_y}' x2='{label_w + plot_w}' y2='{axis_y}' stroke='{GREY}'/>"
               f"<text x='{label_w + plot_w / 2:.1f}' y='{axis_y + 32}' text-anchor='middle'>{_esc(x_label)}</text>")
    if nser > 1:
        x = label_w
        for j, name in enumerate(series):
            out.append(f"<rect x='{x}' y='4' width='10' height='10' fill='{colors[j % len(colors)]}'/>"
                       f"<text x='{x + 14}' y='13'>{_esc(name)}</text>")
            x += 20 + 7 * len(name)
    out.append("</svg>")
    return "".join(out)


def _frame(x0, y0, x1, y1, xticks, yticks, xmap, ymap, x_label, y_label) -> list[str]:
    """Axes, ticks, gridlines and labels of an x/y plot whose plot area is (x0, y0)-(x1, y1)."""
    out = []
    for t in yticks:
        y = ymap(t)
        out.append(f"<line x1='{x0}' y1='{y:.1f}' x2='{x1}' y2='{y:.1f}' stroke='#e4e4e4'/>"
                   f"<line x1='{x0 - 4}' y1='{y:.1f}' x2='{x0}' y2='{y:.1f}' stroke='{GREY}'/>"
                   f"<text x='{x0 - 6}' y='{y + 4:.1f}' text-anchor='end'>{fmt_tick(t)}</text>")
    for t in xticks:
        x = xmap(t)
        out.append(f"<line x1='{x:.1f}' y1='{y1}' x2='{x:.1f}' y2='{y1 + 4}' stroke='{GREY}'/>"
                   f"<text x='{x:.1f}' y='{y1 + 16}' text-anchor='middle'>{fmt_tick(t)}</text>")
    out.append(f"<line x1='{x0}' y1='{y0}' x2='{x0}' y2='{y1}' stroke='{GREY}'/>"
               f"<line x1='{x0}' y1='{y1}' x2='{x1}' y2='{y1}' stroke='{GREY}'/>"
               f"<text x='{(x0 + x1) / 2:.1f}' y='{y1 + 32}' text-anchor='middle'>{_esc(x_label)}</text>"
               f"<text transform='translate(12,{(y0 + y1) / 2:.1f}) rotate(-90)' text-anchor='middle'>"
               f"{_esc(y_label)}</text>")
    return out


def histogram(h: dict, x_label: str = "value", y_label: str = "count", bars_name: str = "this run",
              line_name: str = "reference", width: int = 760, height: int = 260) -> str:
    """A histogram in the report's format ({"edges", "counts", "reference"?}) as bars, the optional
    reference as a line over the same bins."""
    counts = list(h.get("counts", []))
    ref = list(h.get("reference", []) or [])
    edges = list(h.get("edges", []))
    if not counts:
        return "<p>(empty)</p>"
    if len(edges) != len(counts) + 1:
        edges = list(range(len(counts) + 1))
    x0, y0, x1, y1 = 62, 24, width - 16, height - 40
    yticks = nice_ticks(0, max(counts + ref + [1]))
    lo, hi = edges[0], edges[-1]
    xmap = lambda v: x0 + (x1 - x0) * (v - lo) / ((hi - lo) or 1)  # noqa: E731
    ymap = lambda v: y1 - (y1 - y0) * v / yticks[-1]  # noqa: E731
    out = [f"<svg width='{width}' height='{height}' xmlns='http://www.w3.org/2000/svg' {_FONT}>"]
    out += _frame(x0, y0, x1, y1, nice_ticks(lo, hi, 8), yticks, xmap, ymap, x_label, y_label)
    for c, a, b in zip(counts, edges[:-1], edges[1:]):
        xa, xb = xmap(a), xmap(b)
        out.append(f"<rect x='{xa:.1f}' y='{ymap(c):.1f}' width='{max(xb - xa - 1, 1):.1f}' "
                   f"height='{y1 - ymap(c):.1f}' fill='{BLUE}' fill-opacity='0.8'/>")
    if ref:
        pts = " ".join(f"{xmap((a + b) / 2):.1f},{ymap(c):.1f}" for c, a, b in zip(ref, edges[:-1], edges[1:]))
        out.append(f"<polyline points='{pts}' fill='none' stroke='{RED}' stroke-width='2'/>")
        out.append(f"<rect x='{x0 + 8}' y='6' width='10' height='10' fill='{BLUE}'/><text x='{x0 + 22}' y='15'>"
                   f"{_esc(bars_name)}</text><line x1='{x0 + 120}' y1='11' x2='{x0 + 136}' y2='11' stroke='{RED}' "
                   f"stroke-width='2'/><text x='{x0 + 140}' y='15'>{_esc(line_name)}</text>")
    out.append("</svg>")
    return "".join(out)


def series(values: list[float], x_label: str = "position", y_label: str = "value", x_max: float | None = None,
           width: int = 760, height: int = 220) -> str:
    """A line over its index; `x_max` relabels the x axis (a downsampled series of a longer path)."""
    if not values:
        return "<p>(empty)</p>"
    # at most one point per pixel: a path of a million points helps no one
    step = max(1, len(values) // width)
    vals = [sum(values[i:i + step]) / len(values[i:i + step]) for i in range(0, len(values), step)]
    x0, y0, x1, y1 = 62, 10, width - 16, height - 40
    yticks = nice_ticks(min(vals), max(vals))
    span_x = x_max if x_max else len(values)
    xmap = lambda v: x0 + (x1 - x0) * v / (span_x or 1)  # noqa: E731
    ymap = lambda v: y1 - (y1 - y0) * (v - yticks[0]) / ((yticks[-1] - yticks[0]) or 1)  # noqa: E731
    out = [f"<svg width='{width}' height='{height}' xmlns='http://www.w3.org/2000/svg' {_FONT}>"]
    out += _frame(x0, y0, x1, y1, nice_ticks(0, span_x, 8), yticks, xmap, ymap, x_label, y_label)
    n = len(vals)
    pts = " ".join(f"{xmap(span_x * (i + 0.5) / n):.1f},{ymap(v):.1f}" for i, v in enumerate(vals))
    out.append(f"<polyline points='{pts}' fill='none' stroke='{BLUE}'/></svg>")
    return "".join(out)
