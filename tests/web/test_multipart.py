"""`cloud.web.multipart`: a form's file and fields as browsers send them, byte for byte; any
bytes (and any declared type) either parse or raise `Invalid`, never anything else."""

from __future__ import annotations

import contextlib
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud.errors import Invalid
from cloud.web.multipart import MAX_PARTS, Upload, parse_multipart

BOUNDARY = "----WebKitFormBoundary7MA4YWxkTrZu0gW"
TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def part(name: str, value: bytes, extra: str = "") -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"{extra}\r\n"
            "\r\n").encode() + value + b"\r\n"  # fmt: skip


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


PHOTO = os.urandom(4096) + b"\r\n--\r\n\x00\r"  # line ends and dashes inside the file
FORM = body(part("csrf", b"tok"), part("key", "键-1".encode()),
            part("photo", PHOTO, '; filename="IMG_1.jpg"\r\nContent-Type: image/jpeg'))  # fmt: skip


def test_a_browsers_form_gives_its_fields_and_the_files_bytes_exactly() -> None:
    fields, upload = parse_multipart(FORM, TYPE, "photo")
    assert fields == {"csrf": "tok", "key": "键-1"}
    assert upload == Upload("image/jpeg", PHOTO)
    quoted = TYPE.replace(BOUNDARY, f'"{BOUNDARY}"') + "; charset=utf-8"
    assert parse_multipart(FORM, quoted, "photo")[1].data == PHOTO


@pytest.mark.parametrize(
    ("sent", "declared"),
    [
        (FORM, "application/x-www-form-urlencoded"),
        (FORM, "multipart/form-data"),  # no boundary
        (FORM, "multipart/form-data; boundary=other"),
        (FORM, "multipart/form-data; boundary=a b"),
        (body(part("csrf", b"tok")), TYPE),  # no file
        (body(part("csrf", b"a"), part("csrf", b"b"), part("photo", b"x")), TYPE),
        (body(part("photo", b"x"), part("photo", b"y")), TYPE),
        (body(part("csrf", b"x" * 257), part("photo", b"x")), TYPE),
        (body(part("csrf", b"\xff\xfe"), part("photo", b"x")), TYPE),
        (body(part("csrf", b"a\x00"), part("photo", b"x")), TYPE),
        (body(*(part(f"f{i}", b"v") for i in range(MAX_PARTS)), part("photo", b"x")), TYPE),
        (FORM[: len(FORM) // 2], TYPE),  # cut off
        (b"", TYPE),
    ],
)
def test_what_is_not_such_a_form_is_refused(sent: bytes, declared: str) -> None:
    with pytest.raises(Invalid):
        parse_multipart(sent, declared, "photo")


@given(st.binary(max_size=2048), st.sampled_from([TYPE, "multipart/form-data; boundary=x"]))
def test_any_bytes_parse_or_are_refused(sent: bytes, declared: str) -> None:
    with contextlib.suppress(Invalid):
        fields, upload = parse_multipart(sent, declared, "photo")
        assert isinstance(upload.data, bytes) and all(isinstance(v, str) for v in fields.values())


@given(st.lists(st.binary(max_size=200), max_size=6), st.text(max_size=80))
def test_any_parts_and_any_declared_type_parse_or_are_refused(
    pieces: list[bytes], declared: str
) -> None:
    sent = body(*(part("photo" if i == 0 else f"f{i}", p) for i, p in enumerate(pieces)))
    for content_type in (TYPE, declared):
        try:
            _, upload = parse_multipart(sent, content_type, "photo")
        except Invalid:
            continue
        assert upload.data == pieces[0]
