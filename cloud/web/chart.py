"""Monthly use as bars, laid out on the server for an inline SVG (`templates/_bars.html`).

Why not ECharts on the phone page: it is about 1 MB of script to download and run before the
first bar shows, which on a market's 2G/3G connection or an old phone in WeChat's browser is
seconds; six bars are a few hundred bytes of SVG, drawn with the page, no script at all. (The
console, on desktops with many interactive charts, may still choose ECharts.)

Coordinates are integers in a fixed viewBox; the SVG scales to the screen's width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH, HEIGHT = 320, 160
TOP, BOTTOM = 18, 22  # room for the value above a bar and the month below it
GAP = 10


@dataclass(frozen=True, slots=True)
class Bar:
    x: int
    y: int
    width: int
    height: int
    value: str  # kWh as shown above the bar
    label: str  # the month as shown below it
    current: bool  # this month (drawn in the accent colour)

    @property
    def centre(self) -> int:
        return self.x + self.width // 2


def kwh_text(wh: int) -> str:
    """`12345` → `"12.3"`: one decimal, rounded down (exact integer arithmetic)."""
    tenths = wh // 100
    return f"{tenths // 10}.{tenths % 10}"


def bars(months: Sequence[tuple[str, int]]) -> list[Bar]:
    """Bars for (label, Wh) oldest first, the last being this month."""
    if not months:
        return []
    top = max(1, *(wh for _, wh in months))
    slot = WIDTH // len(months)
    width = max(slot - GAP, 4)
    room = HEIGHT - TOP - BOTTOM
    out = []
    for index, (label, wh) in enumerate(months):
        height = max(wh, 0) * room // top
        if wh > 0:
            height = max(height, 2)  # a little use is still seen
        out.append(Bar(
            x=index * slot + (slot - width) // 2, y=HEIGHT - BOTTOM - height, width=width,
            height=height, value=kwh_text(max(wh, 0)), label=label,
            current=index == len(months) - 1,
        ))  # fmt: skip
    return out
