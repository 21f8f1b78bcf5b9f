"""The photo gate (`cloud.operations.photos.checked_image`): real images of each accepted type
made here, re-encoded without their metadata and turned upright; every other thing — other
types by their magic, a type that is not the declared one, truncated and corrupt files, a
decompression bomb, too many bytes — refused with `PhotoRefused`; and any bytes at all either
pass or raise `PhotoRefused`, never anything else (Hypothesis)."""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from cloud.api.guards import BODY_LIMITS, FORM_OVERHEAD
from cloud.operations.photos import FORMATS, MAX_BYTES, MAX_SIDE, PhotoRefused, checked_image

GPS_IFD, ORIENTATION, MAKE = 0x8825, 0x0112, 0x010F


def image_bytes(pillow: str, size: tuple[int, int] = (48, 32), **save: object) -> bytes:
    image = Image.new("RGB", size, (11, 110, 79))
    image.paste((250, 200, 0), (0, 0, size[0] // 2, size[1] // 2))  # something to compress
    out = io.BytesIO()
    image.save(out, pillow, **save)
    return out.getvalue()


def with_exif(pillow: str, size: tuple[int, int] = (48, 32)) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # the camera was turned: show rotated by 90°
    exif[MAKE] = "PhoneCo"
    exif.get_ifd(GPS_IFD)[2] = (22.0, 32.0, 10.5)  # latitude
    return image_bytes(pillow, size, exif=exif.tobytes())


SAMPLES = {fmt.media_type: with_exif(fmt.pillow) for fmt in FORMATS}


@pytest.mark.parametrize("media_type", sorted(SAMPLES))
def test_each_type_is_kept_upright_and_without_metadata(media_type: str) -> None:
    sent = SAMPLES[media_type]
    with Image.open(io.BytesIO(sent)) as original:
        assert original.getexif()[MAKE] == "PhoneCo"  # the sample does carry it
    kept = checked_image(sent, f"{media_type}; charset=binary")
    assert (kept.media_type, kept.width, kept.height) == (media_type, 32, 48)  # rotated
    with Image.open(io.BytesIO(kept.data)) as image:
        assert image.format == next(f.pillow for f in FORMATS if f.media_type == media_type)
        assert dict(image.getexif()) == {}
        assert "exif" not in image.info
        assert image.size == (32, 48)


def test_a_large_photo_is_shrunk_and_png_text_dropped() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "at 22.53N 113.93E")
    sent = image_bytes("PNG", (MAX_SIDE * 2, 64), pnginfo=info)
    kept = checked_image(sent, "image/png")
    assert (kept.width, kept.height) == (MAX_SIDE, 32)
    with Image.open(io.BytesIO(kept.data)) as image:
        assert "Comment" not in image.info


def test_the_body_limit_is_the_photo_limit_and_a_forms_fields() -> None:
    assert [most for _, most in BODY_LIMITS] == [MAX_BYTES + FORM_OVERHEAD]


PNG = SAMPLES["image/png"]
JPEG = SAMPLES["image/jpeg"]
WEBP = SAMPLES["image/webp"]
REFUSED = {
    "empty": (b"", "image/png"),
    "gif": (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "image/gif"),
    "gif declared png": (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "image/png"),
    "svg": (b'<svg xmlns="http://www.w3.org/2000/svg"><script>x()</script></svg>', "image/png"),
    "html": (b"<html><script>alert(1)</script></html>", "image/jpeg"),
    "pdf": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "image/jpeg"),
    "bmp": (image_bytes("BMP"), "image/png"),
    "png renamed .jpg": (PNG, "image/jpeg"),
    "jpeg sent as webp": (JPEG, "image/webp"),
    "png as text": (PNG, "text/plain"),
    "no type": (PNG, ""),
    "truncated png": (PNG[: len(PNG) // 2], "image/png"),
    "truncated jpeg": (JPEG[: len(JPEG) - 40], "image/jpeg"),
    "truncated webp": (WEBP[:60], "image/webp"),
    "png bad checksum": (PNG[:40] + bytes([PNG[40] ^ 0xFF]) + PNG[41:], "image/png"),
    "magic only": (b"\xff\xd8\xff", "image/jpeg"),
    "riff not webp": (b"RIFF\x10\x00\x00\x00WAVEfmt ", "image/webp"),
    "bomb": (image_bytes("PNG", (8000, 6000)), "image/png"),  # 48 Mpx of one colour: small
    "too many bytes": (PNG + b"\x00" * MAX_BYTES, "image/png"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused(name: str) -> None:
    data, declared = REFUSED[name]
    with pytest.raises(PhotoRefused):
        checked_image(data, declared)


MAGICS = [fmt.also + b"\x00" * (fmt.at - len(fmt.also)) + fmt.magic for fmt in FORMATS]


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """A real image with a few bytes changed, cut or inserted."""
    data = bytearray(draw(st.sampled_from(sorted(SAMPLES.values()))))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        match draw(st.sampled_from(["flip", "cut", "insert"])):
            case "flip":
                data[at] ^= draw(st.integers(1, 255))
            case "cut":
                del data[at : at + draw(st.integers(1, 64))]
            case "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=16))
        if not data:
            break
    return bytes(data)


ANY_BYTES = st.one_of(st.binary(max_size=256),
                      st.builds(bytes.__add__, st.sampled_from(MAGICS), st.binary(max_size=512)),
                      damaged())  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=ANY_BYTES, declared=st.sampled_from(["image/jpeg", "image/png", "image/webp"]))
def test_any_bytes_are_a_photo_or_refused(data: bytes, declared: str) -> None:
    try:
        kept = checked_image(data, declared)
    except PhotoRefused:
        return
    assert kept.media_type == declared
    with Image.open(io.BytesIO(kept.data)) as image:
        image.load()
        assert image.size == (kept.width, kept.height)
