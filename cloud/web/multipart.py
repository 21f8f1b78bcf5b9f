"""A `multipart/form-data` body (RFC 7578) as a form without script sends a file: its text
fields and its one file, parsed with the standard library's MIME parser (`email`), not
python-multipart — the only multipart form is the field app's photo, and one dependency fewer
faces the outside (as `forms` for url-encoded forms).

The body is already bounded by `cloud.api.guards.BodyGuard`. At most `MAX_PARTS` parts, each
named once; a text field is UTF-8, at most `forms.MAX_FIELD` characters, no NUL; only the
field named as the file may carry bytes (`Upload`: the bytes as sent, the part's declared type —
checking what they are is the caller's). Any other bytes raise `Invalid`, never anything else.
"""

from __future__ import annotations

import email.policy
import re
from dataclasses import dataclass
from email.errors import MessageError
from email.message import MIMEPart
from email.parser import BytesParser

from cloud.errors import Invalid
from cloud.web.forms import MAX_FIELD

MEDIA_TYPE = "multipart/form-data"
MAX_PARTS = 8
BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=?]{1,70}")  # RFC 2046's bchars, no space


@dataclass(frozen=True, slots=True)
class Upload:
    """The file a form sent: its bytes as they came and the type its part declared."""

    content_type: str
    data: bytes


def parse_multipart(body: bytes, content_type: str, file: str) -> tuple[dict[str, str], Upload]:
    """The text fields and the file of field `file`; `Invalid` for anything else (no file,
    another media type, a malformed body, a field twice, too many or too long fields)."""
    media, _, params = content_type.partition(";")
    boundary = _boundary(params)
    if media.strip().lower() != MEDIA_TYPE or boundary is None:
        raise Invalid(f"a file is sent as {MEDIA_TYPE} with a boundary")
    head = f'Content-Type: {MEDIA_TYPE}; boundary="{boundary}"\r\n\r\n'.encode()
    try:
        message = BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        parts = list(message.iter_parts()) if message.is_multipart() else []
        fields, upload = _fields(parts, file)
    except (MessageError, ValueError, LookupError, TypeError, AttributeError) as exc:
        raise Invalid(f"the form is not one we take: {exc}") from None
    if message.defects or not parts:
        raise Invalid("the form is not one we take: a malformed multipart body")
    if upload is None:
        raise Invalid(f"the form sends no {file!r}")
    return fields, upload


def _boundary(params: str) -> str | None:
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "boundary":
            value = value.strip().removeprefix('"').removesuffix('"')
            return value if BOUNDARY.fullmatch(value) else None
    return None


def _fields(parts: list[MIMEPart], file: str) -> tuple[dict[str, str], Upload | None]:
    if len(parts) > MAX_PARTS:
        raise Invalid(f"the form has more than {MAX_PARTS} fields")
    fields: dict[str, str] = {}
    upload = None
    for part in parts:
        name = part.get_param("name", header="content-disposition")
        if part.get_content_disposition() != "form-data" or not isinstance(name, str):
            raise Invalid("each part of the form is a named form-data field")
        if name in fields or (name == file and upload is not None):
            raise Invalid(f"the form sends {name!r} twice")
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            raise Invalid(f"the form's {name!r} is not a field")
        if name == file:
            upload = Upload(part.get_content_type(), data)
            continue
        text = data.decode("utf-8")
        if len(text) > MAX_FIELD or "\x00" in text:
            raise Invalid(f"the form's {name!r} is too long or holds a NUL")
        fields[name] = text
    return fields, upload
