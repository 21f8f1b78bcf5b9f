"""The pages' web fonts: Noto Sans SC (SIL OFL 1.1, from the `pylopdf-fonts-zh-cn` wheel, as the
PDFs use it, `cloud.reports.fonts`) subset and vendored as WOFF (zlib: no brotli needed):

| file                                 | characters                                | size    |
|--------------------------------------|-------------------------------------------|---------|
| `static/fonts/voltbook-sc.woff`      | the message catalogue's, and ASCII        | ~47 kB  |
| `static/fonts/voltbook-sc-common.woff` | the 3 755 common characters (GB 2312    | ~660 kB |
|                                      | level 1): notices' text, an operator's    |         |
|                                      | note, names                               |         |

Phones have a Chinese system font and never download either (the CSS names them after the
system fonts; a browser fetches a web font only for a character the fonts before it lack); a
machine with none (a kiosk, a headless test browser) gets the labels from the small file and
other Chinese text from the common one instead of boxes. A test fails when a catalogue character
is missing from the small file; regenerate them (the common one takes ~15 s and only changes
with the font) with

    python -m cloud.web.webfont
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from fontTools.subset import Options, Subsetter
from fontTools.ttLib import TTFont

from cloud.reports.fonts import source_path
from cloud.web.catalogue import MESSAGES

FONTS = Path(__file__).parent / "static" / "fonts"
TARGET = FONTS / "voltbook-sc.woff"
COMMON_TARGET = FONTS / "voltbook-sc-common.woff"
ALWAYS = "".join(chr(c) for c in range(0x20, 0x7F)) + "¥￥·—…“”‘’、。，：；！？（）《》【】"


def characters() -> str:
    """Every character the catalogue's Chinese (and English) words use, and ASCII."""
    chars = set(ALWAYS)
    for zh, en in MESSAGES.values():
        chars |= set(zh) | set(en)
    return "".join(sorted(chars))


def common_characters() -> str:
    """GB 2312 level 1 (the 3 755 most used characters): fixed, so this file never changes
    when the catalogue does (the few it shares with the small file cost a few kB)."""
    found = set()
    for high in range(0xB0, 0xD8):
        for low in range(0xA1, 0xFF):
            try:
                found.add(bytes([high, low]).decode("gb2312"))
            except UnicodeDecodeError:  # the gaps of the code table
                continue
    return "".join(sorted(found))


def subset(chars: str) -> bytes:
    font = TTFont(source_path(), lazy=False)
    options = Options()
    options.flavor = "woff"
    options.layout_features = ["kern", "liga", "locl", "palt", "vert"]
    options.hinting = False
    options.desubroutinize = True
    options.name_IDs = [0, 1, 2, 3, 4, 5, 6, 13, 14]  # keep the copyright and licence
    options.notdef_outline = True
    subsetter = Subsetter(options)
    subsetter.populate(text=chars)
    subsetter.subset(font)
    out = io.BytesIO()
    font.flavor = "woff"
    font.save(out)
    return out.getvalue()


def covered(path: Path = TARGET) -> set[str]:
    """The characters the vendored font has glyphs for."""
    font = TTFont(path)
    return {chr(code) for code in font.getBestCmap()}


def main() -> int:
    FONTS.mkdir(parents=True, exist_ok=True)
    for target, chars in ((TARGET, characters()), (COMMON_TARGET, common_characters())):
        data = subset(chars)
        target.write_bytes(data)
        sys.stdout.write(f"{target}: {len(data)} bytes, {len(chars)} characters\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
