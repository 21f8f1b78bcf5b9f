"""The Chinese font of printed reports: Noto Sans SC, subset to a document's characters.

The font comes from the data-only wheel `pylopdf-fonts-zh-cn` (SIL Open Font License 1.1), found
with `importlib.resources`: servers and users' machines have no CJK font, and PyPI is reachable
where the internet is not.

Noto Sans SC is an OpenType font with CID-keyed CFF outlines. fpdf2 2.8.9 embeds such a font
wrongly when it subsets it: the subset keeps the original CIDs while the page's text uses new
ones, so a viewer draws the wrong glyphs. So we subset it ourselves with fontTools to the
characters the document uses (about 0.15 s), convert the few outlines to TrueType (quadratic,
within 1 font unit), and give fpdf2 that small TrueType font, which it embeds the way it embeds
any TrueType font: a `CIDFontType2` with a `FontFile2` stream and an `ABCDEF+` subset name.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterable
from importlib.resources import files
from pathlib import Path

from fontTools.pens.cu2quPen import Cu2QuPen
from fontTools.pens.ttGlyphPen import TTGlyphPen
from fontTools.subset import Options, Subsetter
from fontTools.ttLib import TTFont, newTable

PACKAGE = "pylopdf_fonts_zh_cn"
FILE = "NotoSansSC-Regular.otf"
ALWAYS = " 0123456789…"  # page numbers, cut cells
MAX_ERROR = 1.0  # font units (of 1000 per em) the quadratic outlines may stray
_MAXP_ZEROED = ("maxZones", "maxTwilightPoints", "maxStorage", "maxFunctionDefs",
                "maxInstructionDefs", "maxStackElements", "maxSizeOfInstructions",
                "maxComponentElements")  # fmt: skip


def source_path() -> Path:
    """Where the installed OpenType font is."""
    return Path(str(files(PACKAGE).joinpath(FILE)))


def truetype_subset(text: Iterable[str]) -> bytes:
    """A TrueType font with the glyphs of every character in `text`."""
    chars = set().union(*(set(t) for t in text)) | set(ALWAYS)
    return _subset("".join(sorted(chars)))


@functools.lru_cache(maxsize=32)
def _subset(chars: str) -> bytes:
    font = TTFont(source_path(), lazy=True)
    options = Options()
    options.layout_features = []
    options.hinting = False
    options.desubroutinize = True
    options.notdef_outline = True
    options.name_IDs = [0, 1, 2, 3, 4, 5, 6]
    subsetter = Subsetter(options)
    subsetter.populate(text=chars)
    subsetter.subset(font)
    _cff_to_glyf(font)
    out = io.BytesIO()
    font.save(out)
    return out.getvalue()


def _cff_to_glyf(font: TTFont) -> None:
    """Replace the CFF outlines by TrueType ones (fontTools' otf2ttf recipe)."""
    glyph_set = font.getGlyphSet()
    order = font.getGlyphOrder()
    glyf = newTable("glyf")
    glyf.glyphOrder = order
    glyf.glyphs = {}
    for name in order:
        pen = TTGlyphPen(glyph_set)
        glyph_set[name].draw(Cu2QuPen(pen, MAX_ERROR, reverse_direction=True))
        glyf.glyphs[name] = pen.glyph()
    font["glyf"] = glyf
    font["loca"] = newTable("loca")
    for table in ("CFF ", "VORG"):
        if table in font:
            del font[table]
    maxp = font["maxp"]
    maxp.tableVersion = 0x00010000
    for attribute in _MAXP_ZEROED:
        setattr(maxp, attribute, 0)
    maxp.maxZones = 1
    font["post"].formatType = 3.0  # no glyph names: smaller
    font["head"].glyphDataFormat = 0
    font.sfntVersion = "\0\1\0\0"
