"""The pages' web fonts: Noto Sans SC (SIL OFL 1.1, from the `pylopdf-fonts-zh-cn` wheel, as the
PDFs use it, `cloud.reports.fonts`) subset and vendored as WOFF (zlib: no brotli needed):

| file                                    | characters                               | size    |
|-----------------------------------------|------------------------------------------|---------|
| `static/fonts/voltbook-sc.woff`         | the phone page's words (`PHONE_SOURCES`) | < 64 kB |
|                                         | and ASCII                                |         |
| `static/fonts/voltbook-sc-console.woff` | the rest of the message catalogue's      | ~30 kB  |
| `static/fonts/voltbook-sc-common.woff`  | the 3 755 common characters (GB 2312     | ~660 kB |
|                                         | level 1): notices' text, an operator's   |         |
|                                         | note, names                              |         |

The first two are one family, "Voltbook SC", split by `unicode-range` (`static/fonts.css`, also
written here): a browser fetches a file only when the page shows one of its characters, so the
phone page on a slow connection fetches the small one alone, and a word the split missed is
still drawn (from the console's file). Phones have a Chinese system font and never download any
(the CSS names them after the system fonts; a browser fetches a web font only for a character
the fonts before it lack); a machine with none (a kiosk, a headless test browser) gets the
labels from the catalogue's files and other Chinese text from the common one instead of boxes.
A test fails when a catalogue character is in neither file or `fonts.css` is stale; regenerate
them (the common one takes ~15 s and only changes with the font) with

    python -m cloud.web.webfont
"""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

from fontTools.subset import Options, Subsetter
from fontTools.ttLib import TTFont

from cloud.reports.fonts import source_path
from cloud.web.catalogue import MESSAGES

HERE = Path(__file__).parent
FONTS = HERE / "static" / "fonts"
TARGET = FONTS / "voltbook-sc.woff"
CONSOLE_TARGET = FONTS / "voltbook-sc-console.woff"
COMMON_TARGET = FONTS / "voltbook-sc-common.woff"
FONTS_CSS = HERE / "static" / "fonts.css"
# What the merchant's phone page is made of: its templates (not the console's) and modules. A
# catalogue key named in them puts its words in the small file.
PHONE_SOURCES = (
    *sorted((HERE / "templates").glob("*.html")),
    *(HERE / f"{name}.py" for name in ("phone", "merchant_view", "topup", "wechat_login",
                                       "errors", "page_errors", "forms", "chart", "sessions")),
)  # fmt: skip
ALWAYS = "".join(chr(c) for c in range(0x20, 0x7F)) + "¥￥·—…“”‘’、。，：；！？（）《》【】"


def characters() -> str:
    """Every character the catalogue's Chinese (and English) words use, and ASCII."""
    chars = set(ALWAYS)
    for zh, en in MESSAGES.values():
        chars |= set(zh) | set(en)
    return "".join(sorted(chars))


def phone_characters() -> str:
    """ASCII and the characters of the catalogue keys the phone page's sources name."""
    named: set[str] = set()
    for source in PHONE_SOURCES:
        named |= set(re.findall(r"[a-z][a-z0-9_]*", source.read_text(encoding="utf-8")))
    chars = set(ALWAYS)
    for key in named & MESSAGES.keys():
        zh, en = MESSAGES[key]
        chars |= set(zh) | set(en)
    return "".join(sorted(chars))


def console_characters() -> str:
    """The catalogue's characters the phone's file leaves out."""
    return "".join(sorted(set(characters()) - set(phone_characters())))


def unicode_range(chars: str) -> str:
    """`chars` as a CSS unicode-range (runs of consecutive code points joined)."""
    runs: list[list[int]] = []
    for code in sorted(map(ord, chars)):
        if runs and code == runs[-1][1] + 1:
            runs[-1][1] = code
        else:
            runs.append([code, code])
    return ", ".join(f"U+{a:X}" if a == b else f"U+{a:X}-{b:X}" for a, b in runs)


def font_css() -> str:
    """`static/fonts.css`: the catalogue's two files as one family, and the common one."""
    face = (
        '@font-face {{\n  font-family: "{family}";\n  src: url("/static/fonts/{file}") '
        'format("woff");\n  font-display: swap;{extra}\n}}\n'
    )
    console_range = f"\n  unicode-range: {unicode_range(console_characters())};"
    return "".join((
        "/* The web fonts every page names: written by `python -m cloud.web.webfont`. */\n",
        face.format(family="Voltbook SC", file=TARGET.name, extra=""),
        face.format(family="Voltbook SC", file=CONSOLE_TARGET.name, extra=console_range),
        face.format(family="Voltbook SC Common", file=COMMON_TARGET.name, extra=""),
    ))  # fmt: skip


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


def covered(*paths: Path) -> set[str]:
    """The characters the vendored files (by default the catalogue's two) have glyphs for."""
    found: set[str] = set()
    for path in paths or (TARGET, CONSOLE_TARGET):
        found |= {chr(code) for code in TTFont(path).getBestCmap()}
    return found


def main() -> int:
    FONTS.mkdir(parents=True, exist_ok=True)
    made = ((TARGET, phone_characters()), (CONSOLE_TARGET, console_characters()),
            (COMMON_TARGET, common_characters()))  # fmt: skip
    for target, chars in made:
        data = subset(chars)
        target.write_bytes(data)
        sys.stdout.write(f"{target}: {len(data)} bytes, {len(chars)} characters\n")
    FONTS_CSS.write_text(font_css(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
