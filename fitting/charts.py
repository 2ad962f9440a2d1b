"""Charts for the staff dashboard, drawn on the server as inline SVG.

No JavaScript and nothing fetched from elsewhere: each chart is a few rectangles and text
nodes, its labels escaped and in the page's language, with a <title> on every bar so the
exact number shows on hover. The page's own fonts render the (Korean) text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

AXIS = "#8a8f98"
GRID = "#e3e5e8"
TEXT = "#333"


@dataclass(frozen=True)
class Series:
    label: str
    colour: str
    values: Sequence[int]


def _nice_top(value: int) -> int:
    """A round axis maximum at or above ``value`` (1, 2, 5 × 10^n)."""
    if value <= 0:
        return 1
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def stacked_bars(
    labels: Sequence[str], series: Sequence[Series], *, title: str, width: int = 760, height: int = 220
) -> SafeString:
    """Vertical bars, one per label, stacked by series; a legend under the chart.

    Only every ``n``-th label is printed when there are many, so they never overlap.
    """
    left, right, top, bottom = 40, 10, 10, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(s.values[i] for s in series) for i in range(len(labels))]
    y_max = _nice_top(max(totals, default=0))
    slot = plot_w / max(1, len(labels))
    bar_w = max(2.0, slot * 0.7)
    parts: list[SafeString] = []
    for fraction in (0, 0.5, 1):  # grid lines and the y axis's numbers
        y = top + plot_h * (1 - fraction)
        parts.append(
            format_html('<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="{}"/>', left, width - right, y, y, GRID)
        )
        parts.append(
            format_html(
                '<text x="{}" y="{}" font-size="11" text-anchor="end" fill="{}">{}</text>',
                left - 4,
                y + 4,
                AXIS,
                round(y_max * fraction),
            )
        )
    every = max(1, round(len(labels) / 12))
    for i, label in enumerate(labels):
        x = left + slot * i + (slot - bar_w) / 2
        y = top + plot_h
        for s in series:
            value = s.values[i]
            if value:
                h = plot_h * value / y_max
                y -= h
                parts.append(
                    format_html(
                        '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{} · {}: {}</title></rect>',
                        round(x, 1),
                        round(y, 1),
                        round(bar_w, 1),
                        round(h, 1),
                        s.colour,
                        label,
                        s.label,
                        value,
                    )
                )
        if i % every == 0:
            parts.append(
                format_html(
                    '<text x="{}" y="{}" font-size="11" text-anchor="middle" fill="{}">{}</text>',
                    round(x + bar_w / 2, 1),
                    top + plot_h + 14,
                    AXIS,
                    label,
                )
            )
    parts.append(_legend(series, x=left, y=height - 12))
    return _svg(parts, width=width, height=height, title=title)


def horizontal_bars(
    rows: Sequence[tuple[str, Sequence[tuple[int, str, str]]]],
    *,
    title: str,
    unit: str = "",
    width: int = 760,
    label_width: int = 260,
) -> SafeString:
    """One row per label, with one bar per (value, colour, name) under each other."""
    bar_h, gap = 14, 10
    lines = sum(max(1, len(bars)) for _, bars in rows)
    height = max(40, lines * bar_h + len(rows) * gap + 10)
    plot_w = width - label_width - 70
    x_max = max((value for _, bars in rows for value, _, _ in bars), default=0) or 1
    parts: list[SafeString] = []
    y = 5
    for label, bars in rows:
        parts.append(
            format_html(
                '<text x="{}" y="{}" font-size="12" text-anchor="end" fill="{}">{}</text>',
                label_width - 8,
                y + bar_h * max(1, len(bars)) / 2 + 4,
                TEXT,
                label,
            )
        )
        for value, colour, name in bars:
            w = max(1.0, plot_w * value / x_max)
            parts.append(
                format_html(
                    '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{} {}: {}{}</title></rect>'
                    '<text x="{}" y="{}" font-size="11" fill="{}">{}{} {}</text>',
                    label_width,
                    y,
                    round(w, 1),
                    bar_h - 2,
                    colour,
                    label,
                    name,
                    value,
                    unit,
                    round(label_width + w + 4, 1),
                    y + bar_h - 4,
                    TEXT,
                    value,
                    unit,
                    name,
                )
            )
            y += bar_h
        y += gap
    return _svg(parts, width=width, height=height, title=title)


def _legend(series: Sequence[Series], *, x: int, y: int) -> SafeString:
    parts = []
    for s in series:
        parts.append(
            format_html(
                '<rect x="{}" y="{}" width="10" height="10" fill="{}"/>'
                '<text x="{}" y="{}" font-size="11" fill="{}">{}</text>',
                x,
                y - 9,
                s.colour,
                x + 14,
                y,
                TEXT,
                s.label,
            )
        )
        x += 24 + 9 * len(str(s.label)) + 12
    return format_html_join("", "{}", ((part,) for part in parts))


def _svg(parts: list[str], *, width: int, height: int, title: str) -> SafeString:
    body = format_html_join("", "{}", ((part,) for part in parts))  # each part is a SafeString
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{}" width="{}" height="{}" '
        'viewBox="0 0 {} {}" class="chart"><title>{}</title>{}</svg>',
        title,
        width,
        height,
        width,
        height,
        title,
        body,
    )
