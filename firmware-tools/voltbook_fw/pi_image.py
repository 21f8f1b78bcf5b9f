"""What `voltbook-fw image` reads and changes in a Raspberry Pi OS image, as data (no I/O).

A Raspberry Pi OS SD card image (pi-gen's `export-image`) is an MBR disk:

    byte 0     MBR: 446 bytes of boot code, four 16-byte partition entries, 0x55 0xAA
               entry: status(1) CHS(3) type(1) CHS(3) first sector(4, LE) sectors(4, LE)
    part. 1    the boot partition "bootfs": FAT32 (type 0x0C), mounted at /boot/firmware;
               config.txt, cmdline.txt (one line: the kernel's command line), kernels
    part. 2    the root file system, ext4 (type 0x83)

A FAT boot sector has the bytes per sector at 11 (LE), "FAT32   " at 82 (FAT32) or "FAT16   "
/ "FAT12   " at 54, and 0x55 0xAA at 510. Anything else is `NotAPiImage`, with what it is.

First boot is hooked the way Raspberry Pi Imager does it (its `downloadthread.cpp`): three
words appended to cmdline.txt make systemd run the script once, as root, in place of the normal
boot, then reboot. The path is /boot/firmware/ (Bookworm's mount point) rather than the
Imager's /boot/, which Bookworm's initramfs `imager_fixup` rewrites and whose script it cuts at
its first `rm … firstrun.sh` line.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

from voltbook_fw.errors import AlreadyHooked, ImageError, NotAPiImage

SECTOR = 512
MBR_ENTRIES = 446
BOOT_SIGNATURE = b"\x55\xaa"
FAT_TYPES = {0x01: "FAT12", 0x04: "FAT16", 0x06: "FAT16", 0x0B: "FAT32", 0x0C: "FAT32",
             0x0E: "FAT16"}  # fmt: skip
LINUX = 0x83
GPT_PROTECTIVE = 0xEE
COMPRESSED = {b"\xfd7zXZ\x00": "xz", b"PK\x03\x04": "zip", b"\x1f\x8b": "gzip"}

FIRSTRUN = "firstrun.sh"
HOOK = (
    "systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot "
    "systemd.unit=kernel-command-line.target"
)
# Our files on the boot partition, beside firstrun.sh.
FOLDER = "voltbook"
BUNDLE = f"{FOLDER}/bundle.tar"
RELEASE_PUB = f"{FOLDER}/release.pub"
SETTINGS = f"{FOLDER}/settings.conf"
TOKEN = f"{FOLDER}/claim.token"

# A site name or URL goes into a shell command the installer copies from the box's screen.
UNSAFE = re.compile(r"[\x00-\x1f\x7f'\"`$\\]")
CLOUD_URL = re.compile(r"https?://[^\s/?#]+(/[^\s?#]*)?")
CLAIM_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,200}")


@dataclass(frozen=True, slots=True)
class BootPartition:
    start: int  # bytes from the image's start
    size: int  # bytes
    fat: str  # FAT32, FAT16 or FAT12


ReadAt = Callable[[int, int], bytes]  # (offset, length) → at most `length` bytes


def find_boot_partition(read_at: ReadAt, image_size: int) -> BootPartition:
    """Partition 1 of the MBR, checked to be a FAT file system, with a Linux partition 2."""
    head = read_at(0, SECTOR)
    for magic, kind in COMPRESSED.items():
        if head.startswith(magic):
            raise NotAPiImage(
                f"this is a {kind}-compressed file, not a disk image: unpack it first "
                "(e.g. `xz -dk 2024-11-19-raspios-bookworm-arm64-lite.img.xz`) and pass the .img"
            )
    if len(head) < SECTOR or head[510:512] != BOOT_SIGNATURE:
        raise NotAPiImage(
            "it has no MBR (no 0x55AA signature at byte 510): not a Raspberry Pi OS image; "
            "use the .img of Raspberry Pi OS Lite"
        )
    entries = [
        struct.unpack_from("<B3xB3xII", head, MBR_ENTRIES + 16 * n) for n in range(4)
    ]  # (status, type, first sector, sectors)
    kind, first, sectors = entries[0][1:]
    if kind == GPT_PROTECTIVE:
        raise NotAPiImage("it is a GPT disk: Raspberry Pi OS images use an MBR")
    if kind not in FAT_TYPES:
        raise NotAPiImage(
            f"its first partition is of type 0x{kind:02X}, not FAT: a Raspberry Pi OS image "
            "starts with its FAT boot partition"
        )
    if entries[1][1] != LINUX:
        raise NotAPiImage(
            f"its second partition is of type 0x{entries[1][1]:02X}, not a Linux root file "
            "system (0x83): not a Raspberry Pi OS image"
        )
    start, size = first * SECTOR, sectors * SECTOR
    if first == 0 or sectors == 0 or start + size > image_size:
        raise NotAPiImage(
            f"its boot partition (sectors {first}+{sectors}) lies outside the file's "
            f"{image_size} bytes: a cut-short download? get the image again"
        )
    return BootPartition(start, size, fat_type(read_at(start, SECTOR)))


def fat_type(boot_sector: bytes) -> str:
    """The FAT type a boot sector declares, or `NotAPiImage`."""
    if len(boot_sector) < SECTOR or boot_sector[510:512] != BOOT_SIGNATURE:
        raise NotAPiImage("its first partition holds no FAT file system (no boot sector)")
    if struct.unpack_from("<H", boot_sector, 11)[0] != SECTOR:
        raise NotAPiImage("its boot partition's FAT does not use 512-byte sectors")
    if boot_sector[82:87] == b"FAT32":
        return "FAT32"
    if boot_sector[54:59] in (b"FAT16", b"FAT12"):
        return boot_sector[54:59].decode("ascii")
    raise NotAPiImage("its first partition holds no FAT file system (no FAT type in its BPB)")


def with_hook(cmdline: bytes) -> bytes:
    """cmdline.txt with the first-boot hook appended, refused if it has one already."""
    try:
        text = cmdline.decode("utf-8")
    except UnicodeDecodeError:
        raise NotAPiImage("its cmdline.txt is not text: not a Raspberry Pi OS image") from None
    line = text.rstrip("\r\n")
    if not line.strip():
        raise NotAPiImage("its cmdline.txt is empty: the Pi would not know its root file system")
    if "\n" in line or "\r" in line:
        raise NotAPiImage("its cmdline.txt has several lines: the kernel reads one line only")
    if "systemd.run=" in line:
        raise AlreadyHooked(
            "its cmdline.txt already runs a first-boot script (systemd.run=): this image was "
            "already prepared (by voltbook-fw image or Raspberry Pi Imager); start again from "
            "the Raspberry Pi OS image as downloaded"
        )
    return f"{line} {HOOK}\n".encode()


def settings_text(site: str, cloud: str) -> str:
    """`voltbook/settings.conf`: what first boot tells the installer to type (no secret)."""
    if not 1 <= len(site) <= 100 or UNSAFE.search(site):
        raise ImageError(
            "--site is the site's id or name, 1 to 100 characters, without quotes, `$`, `\\` "
            "or control characters"
        )
    if len(cloud) > 200 or not CLOUD_URL.fullmatch(cloud) or UNSAFE.search(cloud):
        raise ImageError(f"--cloud {cloud!r:.80} is not a URL like https://vb.example")
    return f"site={site}\ncloud={cloud}\n"


def check_token(token: str) -> str:
    if not CLAIM_TOKEN.fullmatch(token):
        raise ImageError("--token is a claim token as `voltbook-fw claim` prints it")
    return token
