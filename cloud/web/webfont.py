"""The pages' web font: Noto Sans SC (SIL OFL 1.1, from the `pylopdf-fonts-zh-cn` wheel, as the
PDFs use it, `cloud.reports.fonts`) subset to the characters of the message catalogue, as WOFF
(zlib: no brotli needed), vendored in `static/fonts/voltbook-sc.woff`.

Phones have a Chinese system font and never download it (the CSS names it after the system
fonts); a machine with none (a kiosk, a headless test browser) gets every label in Chinese
instead of boxes. Text that is not in the catalogue (a shop's name, a notice's body) is drawn
by the system's fonts only. A test fails when a catalogue character is missing from the
vendored file; regenerate it with

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

TARGET = Path(__file__).parent / "static" / "fonts" / "voltbook-sc.woff"
ALWAYS = "".join(chr(c) for c in range(0x20, 0x7F)) + "¥￥·—…“”‘’、。，：；！？（）《》【】"


def characters() -> str:
    """Every character the catalogue's Chinese (and English) words use, and ASCII."""
    chars = set(ALWAYS)
    for zh, en in MESSAGES.values():
        chars |= set(zh) | set(en)
    return "".join(sorted(chars))


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
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    data = subset(characters())
    TARGET.write_bytes(data)
    sys.stdout.write(f"{TARGET}: {len(data)} bytes, {len(characters())} characters\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
