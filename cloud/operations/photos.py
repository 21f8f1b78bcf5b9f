"""Photos taken on site for a fault ticket (`cloud.db.faults.FaultPhoto`, `/faults/{id}/photos`,
the field app): the bytes a phone sends are trusted for nothing.

`checked_image` is the gate, a pure function of the bytes and the declared type: at most
`MAX_BYTES`; the type named by the magic bytes (`FORMATS`: JPEG, PNG or WebP, nothing else)
must be the one declared; the image must decode whole (a truncated or corrupt file is refused)
and stay under `MAX_PIXELS` (a decompression bomb is refused before it is decoded). What is
kept is the image re-encoded by us: turned upright by its EXIF orientation, shrunk to at most
`MAX_SIDE` pixels on its long side, and saved without any metadata — a phone's EXIF carries
the GPS position and the device, which a ticket does not need to keep. Any other bytes raise
`PhotoRefused`, never anything else.

`attach` stores a checked photo on a ticket (`attach_to_reading`: beside an on-site reading, a
photo of the meter's register), once per phone key: the same key with the same
bytes answers the photo kept the first time; the same key with other bytes (or another
ticket) is refused (`Conflict`), also when the two race (`once.add_once`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import struct
import warnings
import zlib
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.db.faults import FaultPhoto
from cloud.db.operations import IrReading
from cloud.errors import Conflict, Invalid, NotFound
from cloud.operations import faults
from cloud.operations.once import add_once
from cloud.people import oplog

MAX_BYTES = 5 << 20  # a phone camera's JPEG is 2-5 MB
MAX_PIXELS = 40_000_000  # a 48-megapixel sensor bins to 12; more is a bomb, not a photo
MAX_SIDE = 2048  # enough to read a meter's nameplate; keeps the database (and backups) small


@dataclass(frozen=True, slots=True)
class Format:
    """One accepted image type: its media type, Pillow's name, how its bytes begin."""

    media_type: str
    pillow: str
    magic: bytes
    at: int = 0  # where `magic` sits (WebP: "WEBP" after "RIFF" and a length)
    also: bytes = b""  # and what the file begins with (WebP: "RIFF")


FORMATS = (
    Format("image/jpeg", "JPEG", b"\xff\xd8\xff"),
    Format("image/png", "PNG", b"\x89PNG\r\n\x1a\n"),
    Format("image/webp", "WEBP", b"WEBP", at=8, also=b"RIFF"),
)
MEDIA_TYPES = tuple(f.media_type for f in FORMATS)
SAVE_OPTIONS: dict[str, dict[str, object]] = {
    "JPEG": {"quality": 85, "optimize": True},
    "PNG": {"optimize": False},
    "WEBP": {"quality": 85},
}
# What Pillow raises on bytes it cannot decode (its decoders are not one exception tree).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError,
                 struct.error, zlib.error, Image.DecompressionBombError)  # fmt: skip


class PhotoRefused(Invalid):
    """Bytes that are not a photo we keep; the message says why."""


@dataclass(frozen=True, slots=True)
class CheckedImage:
    """An image as we keep it: re-encoded, with its type and dimensions."""

    media_type: str
    width: int
    height: int
    data: bytes


def sniffed(data: bytes) -> Format | None:
    """The format the bytes' magic names, or None."""
    for fmt in FORMATS:
        if data.startswith(fmt.also) and data[fmt.at : fmt.at + len(fmt.magic)] == fmt.magic:
            return fmt
    return None


def checked_image(data: bytes, declared: str) -> CheckedImage:
    """The photo re-encoded (see the module docstring), or `PhotoRefused`."""
    if not data:
        raise PhotoRefused("the photo is empty")
    if len(data) > MAX_BYTES:
        raise PhotoRefused(f"a photo is at most {MAX_BYTES} bytes, this one {len(data)}")
    media = declared.split(";", 1)[0].strip().lower()
    if media not in MEDIA_TYPES:
        raise PhotoRefused(f"send a photo as one of {', '.join(MEDIA_TYPES)}, not {media!r}")
    fmt = sniffed(data)
    if fmt is None:
        raise PhotoRefused("the bytes are not a JPEG, PNG or WebP image")
    if fmt.media_type != media:
        raise PhotoRefused(f"the bytes are {fmt.media_type}, sent as {media}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module="PIL")  # bad EXIF
            with Image.open(io.BytesIO(data), formats=[fmt.pillow]) as probe:
                if probe.width * probe.height > MAX_PIXELS:
                    raise PhotoRefused(f"{probe.width}×{probe.height} is more than a photo")
                probe.verify()  # the structure (chunk checksums, markers)
            with Image.open(io.BytesIO(data), formats=[fmt.pillow]) as image:
                if fmt.pillow == "JPEG":  # decode at 1/2, 1/4 … scale when that is enough
                    image.draft(image.mode, (MAX_SIDE, MAX_SIDE))
                image.load()  # every pixel: a truncated file fails here
                upright = ImageOps.exif_transpose(image)
    except PhotoRefused:
        raise
    except (*DECODE_ERRORS, UnidentifiedImageError, Image.DecompressionBombWarning) as exc:
        raise PhotoRefused(f"the image does not decode: {exc}") from None
    return _reencoded(upright, fmt)


def _reencoded(image: Image.Image, fmt: Format) -> CheckedImage:
    if fmt.pillow == "JPEG" and image.mode not in {"L", "RGB"}:
        image = image.convert("RGB")
    elif image.mode not in {"1", "L", "LA", "P", "RGB", "RGBA"}:
        image = image.convert("RGBA")
    image.thumbnail((MAX_SIDE, MAX_SIDE))
    out = io.BytesIO()
    image.save(out, fmt.pillow, **SAVE_OPTIONS[fmt.pillow])  # no exif=, no pnginfo=: none kept
    return CheckedImage(fmt.media_type, image.width, image.height, out.getvalue())


@dataclass(frozen=True, slots=True)
class Owner:
    """What a photo is of: a fault ticket or an on-site reading (`ir_readings`), one of them."""

    fault_id: int | None = None
    ir_reading_id: int | None = None

    def of(self, photo: FaultPhoto) -> bool:
        return (photo.fault_id, photo.ir_reading_id) == (self.fault_id, self.ir_reading_id)


def attach(
    session: Session,
    fault_id: int,
    data: bytes,
    declared: str,
    *,
    actor: oplog.Actor,
    now: dt.datetime,
    client_key: str | None = None,
    taken: dt.datetime | None = None,
) -> tuple[FaultPhoto, bool]:
    """(the photo, True) kept on the ticket and logged `fault.photo`; (the photo, False) when
    `client_key` brought these bytes for this ticket already. `NotFound`, `PhotoRefused`,
    `Conflict` (the key was used for other bytes or another ticket) change nothing."""
    owner = Owner(fault_id=fault_id)
    sent = hashlib.sha256(data).hexdigest()
    if client_key is not None and (done := _keyed(session, client_key)) is not None:
        return _replayed(done, owner, sent), False
    fault = faults.one(session, fault_id)
    kept = _kept(session, owner, data, declared, sent, actor=actor, now=now,
                 client_key=client_key, taken=taken)  # fmt: skip
    if kept[1]:
        fault.updated = now
        _logged(session, "fault.photo", f"fault:{fault.id}", kept[0], actor=actor, now=now)
    return kept


def attach_to_reading(
    session: Session,
    reading: IrReading,
    data: bytes,
    declared: str,
    *,
    actor: oplog.Actor,
    now: dt.datetime,
    client_key: str,
    taken: dt.datetime | None = None,
) -> tuple[FaultPhoto, bool]:
    """`attach` for a photo of the meter's register beside an on-site reading, logged
    `ir.photo`: the same checks, the same key rules."""
    owner = Owner(ir_reading_id=reading.id)
    sent = hashlib.sha256(data).hexdigest()
    if (done := _keyed(session, client_key)) is not None:
        return _replayed(done, owner, sent), False
    kept = _kept(session, owner, data, declared, sent, actor=actor, now=now,
                 client_key=client_key, taken=taken)  # fmt: skip
    if kept[1]:
        _logged(session, "ir.photo", f"ir_reading:{reading.id}", kept[0], actor=actor, now=now)
    return kept


def _kept(
    session: Session,
    owner: Owner,
    data: bytes,
    declared: str,
    sent: str,
    *,
    actor: oplog.Actor,
    now: dt.datetime,
    client_key: str | None,
    taken: dt.datetime | None,
) -> tuple[FaultPhoto, bool]:
    image = checked_image(data, declared)
    photo = FaultPhoto(fault_id=owner.fault_id, ir_reading_id=owner.ir_reading_id,
                       content_type=image.media_type, width=image.width, height=image.height,
                       size=len(image.data), sent_sha256=sent, data=image.data, by=actor.user,
                       created=now, taken=None if taken is None else taken.astimezone(dt.UTC),
                       client_key=client_key)  # fmt: skip
    if client_key is None:
        session.add(photo)
    elif (twin := add_once(session, photo, lambda: _keyed(session, client_key))) is not None:
        return _replayed(twin, owner, sent), False  # a concurrent request's, committed first
    session.flush()
    return photo, True


def _logged(
    session: Session, action: str, target: str, photo: FaultPhoto, *, actor: oplog.Actor,
    now: dt.datetime,
) -> None:  # fmt: skip
    oplog.record(session, actor, action, target, None,
                 {"photo": photo.id, "type": photo.content_type, "size": photo.size,
                  "sha256": photo.sent_sha256}, now)  # fmt: skip


def _keyed(session: Session, client_key: str) -> FaultPhoto | None:
    query = select(FaultPhoto).where(FaultPhoto.client_key == client_key)
    return session.scalars(query.execution_options(populate_existing=True)).first()


def _replayed(done: FaultPhoto, owner: Owner, sent: str) -> FaultPhoto:
    if not owner.of(done) or done.sent_sha256 != sent:
        raise Conflict(f"key {done.client_key} was used for another photo")
    return done


def listed(session: Session, fault_id: int) -> list[FaultPhoto]:
    """The ticket's photos, oldest first (without their bytes)."""
    return list(session.scalars(
        select(FaultPhoto).where(FaultPhoto.fault_id == fault_id).order_by(FaultPhoto.id)
    ))  # fmt: skip


def of_readings(session: Session, reading_ids: list[int]) -> dict[int, list[FaultPhoto]]:
    """The photos of these readings (without their bytes), oldest first, by reading."""
    found: dict[int, list[FaultPhoto]] = {}
    query = select(FaultPhoto).where(FaultPhoto.ir_reading_id.in_(reading_ids))
    for photo in session.scalars(query.order_by(FaultPhoto.id)):
        found.setdefault(photo.ir_reading_id or 0, []).append(photo)
    return found


def one(session: Session, fault_id: int, photo_id: int) -> FaultPhoto:
    """The photo with its bytes; `NotFound` unless it is this ticket's."""
    photo = session.get(FaultPhoto, photo_id)
    if photo is None or photo.fault_id != fault_id:
        raise NotFound(f"fault {fault_id} has no photo {photo_id}")
    return photo


def of_reading(session: Session, photo_id: int) -> FaultPhoto:
    """A reading's photo with its bytes; `NotFound` unless it is a reading's."""
    photo = session.get(FaultPhoto, photo_id)
    if photo is None or photo.ir_reading_id is None:
        raise NotFound(f"no reading photo {photo_id}")
    return photo
