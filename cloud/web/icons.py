"""The field app's PNG icons, drawn from the same shapes as `static/field-icon.svg`: a browser
offers to install a web app only when its manifest lists PNG icons of 192 and 512 px, and an
Android launcher crops a `maskable` one to its own shape.

    python -m cloud.web.icons        # writes static/field-icon-{192,512,maskable-512}.png

The PNGs are committed; this is run again only when the drawing changes. Drawing needs Pillow,
which the cloud has already (fpdf2 depends on it), imported only to draw: the server reads just
`ICONS` (the manifest lists them). Each icon is drawn at `SUPERSAMPLE` times its size and scaled
down, for smooth edges.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cloud.web.render import STATIC

if TYPE_CHECKING:
    import PIL.Image

VIEW = 96  # the SVG's viewBox: the shapes below are in its units
CORNER = 20  # the SVG's rx
GREEN, WHITE = "#0b6e4f", "#ffffff"
BOLT = ((54, 12), (26, 54), (44, 54), (38, 84), (70, 40), (52, 40))  # the SVG's path
SUPERSAMPLE = 4
# A maskable icon keeps what matters in the centre circle of 80 % of its width (the W3C safe
# zone): the bolt is shrunk about the centre, and the green fills the square to the edges.
MASKABLE_SCALE = 0.72


@dataclass(frozen=True, slots=True)
class Icon:
    name: str
    size: int
    maskable: bool = False

    @property
    def purpose(self) -> str:
        return "maskable" if self.maskable else "any"


ICONS = (
    Icon("field-icon-192.png", 192),
    Icon("field-icon-512.png", 512),
    Icon("field-icon-maskable-512.png", 512, maskable=True),
)


def draw(icon: Icon) -> PIL.Image.Image:
    """The icon as an RGBA image of `icon.size` pixels square."""
    import PIL.Image  # only a developer draws (see above): the server never loads Pillow
    import PIL.ImageDraw

    big = icon.size * SUPERSAMPLE
    unit = big / VIEW
    image = PIL.Image.new("RGBA", (big, big), (0, 0, 0, 0))
    pen = PIL.ImageDraw.Draw(image)
    if icon.maskable:
        pen.rectangle((0, 0, big, big), fill=GREEN)
    else:
        pen.rounded_rectangle((0, 0, big - 1, big - 1), radius=CORNER * unit, fill=GREEN)
    scale = MASKABLE_SCALE if icon.maskable else 1.0
    centre = VIEW / 2
    points = [
        ((centre + (x - centre) * scale) * unit, (centre + (y - centre) * scale) * unit)
        for x, y in BOLT
    ]
    pen.polygon(points, fill=WHITE)
    return image.resize((icon.size, icon.size), PIL.Image.Resampling.LANCZOS)


def write(folder: Path = STATIC) -> list[Path]:
    written = []
    for icon in ICONS:
        path = folder / icon.name
        draw(icon).save(path, format="PNG", optimize=True)
        written.append(path)
    return written


def main() -> int:
    for path in write():
        sys.stdout.write(f"{path}: {path.stat().st_size} bytes\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
