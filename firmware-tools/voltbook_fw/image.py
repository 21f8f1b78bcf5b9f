"""`voltbook-fw image`: a Raspberry Pi OS image that installs Voltbook on its first boot.

    voltbook-fw image --base 2024-11-19-raspios-bookworm-arm64-lite.img \\
        --bundle voltbook-7-aarch64.tar --release-pub release.pub \\
        --site "East Gate Market" --cloud https://vb.example --out sd.img

writes `sd.img`, for rpi-imager ("Use custom") or `dd`: the base image, unchanged but for its
boot partition (FAT, partition 1), which gains

    firstrun.sh              the first-boot script (voltbook_fw/firstrun.sh)
    voltbook/bundle.tar      the bundle, checked here first (release signature, every hash)
    voltbook/release.pub     the key the box checks it with again, and trusts from then on
    voltbook/settings.conf   site= and cloud=: what the box tells the installer to type
    voltbook/claim.token     only with --token (a secret on the card until first boot)
    cmdline.txt              + systemd.run=/boot/firmware/firstrun.sh ... (pi_image.HOOK)

No secret by default: the claim token is typed at the box (`voltbook-edge provision`). The
FAT partition is written with mtools (`voltbook_fw.fat`): no root, no mount. Design and the
hardware test plan: docs/pi-image.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.chain import load_public_key, public_key_pem
from ledger.errors import LedgerError
from voltbook_fw import pi_image
from voltbook_fw.archive import read_members, read_small
from voltbook_fw.errors import (
    AlreadyHooked,
    BadBundle,
    BundleError,
    ImageError,
    NotAPiImage,
    WrongBox,
)
from voltbook_fw.fat import FatPartition
from voltbook_fw.manifest import ARCHES, MANIFEST, Manifest, decode
from voltbook_fw.verify import Box, verify_bundle

REFUSED = 2
FAILED = 3
PI_ARCHES = ("aarch64", "armv7l")


@dataclass(frozen=True, slots=True)
class Made:
    path: Path
    boot: pi_image.BootPartition
    manifest: Manifest
    seconds: float


def firstrun_script() -> bytes:
    return (resources.files("voltbook_fw") / pi_image.FIRSTRUN).read_bytes()


def make_image(
    *,
    base: Path,
    bundle: Path,
    release_pub_pem: bytes,
    site: str,
    cloud: str,
    out: Path,
    arch: str = "aarch64",
    token: str | None = None,
) -> Made:
    """Check everything, then write `out` (via `out.partial`, renamed when complete)."""
    started = time.monotonic()
    try:
        release_pub = load_public_key(release_pub_pem)
    except LedgerError as exc:
        raise ImageError(f"--release-pub: {exc}") from exc
    files = {
        pi_image.FIRSTRUN: firstrun_script(),
        pi_image.SETTINGS: pi_image.settings_text(site, cloud).encode(),
        pi_image.RELEASE_PUB: public_key_pem(release_pub),
    }
    if token is not None:
        files[pi_image.TOKEN] = (pi_image.check_token(token) + "\n").encode()
    if out.exists():
        raise ImageError(f"{out} exists: an image is never overwritten; remove it or pick --out")
    manifest = check_bundle(bundle, release_pub, arch)
    boot = inspect_base(base)
    fat = FatPartition(base, boot.start)
    cmdline = read_boot_file(fat, "cmdline.txt")
    read_boot_file(fat, "config.txt")
    if fat.read(pi_image.FIRSTRUN) is not None:
        raise AlreadyHooked(
            f"{base}'s boot partition already has a {pi_image.FIRSTRUN}: start again from the "
            "Raspberry Pi OS image as downloaded"
        )
    hooked = pi_image.with_hook(cmdline)

    partial = out.with_name(out.name + ".partial")
    try:
        shutil.copyfile(base, partial)
        target = FatPartition(partial, boot.start)
        target.mkdir(pi_image.FOLDER)
        for name, data in files.items():
            target.write(name, data)
        target.write(pi_image.BUNDLE, bundle.read_bytes())
        target.write("cmdline.txt", hooked)  # last: a half-written card never hooks first boot
        partial.replace(out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return Made(out, boot, manifest, time.monotonic() - started)


def check_bundle(bundle: Path, release_pub: Ed25519PublicKey, arch: str) -> Manifest:
    """The bundle verified whole, as the box will (no bad bundle ever goes onto a card)."""
    claimed = peek_manifest(bundle)
    box = Box(arch, claimed.python, installed=0)
    with tempfile.TemporaryDirectory(prefix="voltbook-image-") as staging:
        return verify_bundle(bundle, release_pub, box, Path(staging)).manifest


def peek_manifest(bundle: Path) -> Manifest:
    """The manifest as the bundle states it (not yet verified): which Python the box needs."""
    try:
        with tarfile.open(bundle, mode="r:") as tar:
            return decode(read_small(tar, read_members(tar)[MANIFEST]))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BadBundle(f"{bundle} is not a readable (uncompressed) tar: {exc}") from exc


def inspect_base(base: Path) -> pi_image.BootPartition:
    try:
        with base.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            return pi_image.find_boot_partition(
                lambda offset, length: os.pread(handle.fileno(), length, offset), size
            )
    except OSError as exc:
        raise ImageError(f"cannot read --base {base}: {exc}") from exc


def read_boot_file(fat: FatPartition, name: str) -> bytes:
    data = fat.read(name)
    if data is None:
        raise NotAPiImage(f"its boot partition has no {name}: not a Raspberry Pi OS image")
    return data


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "image",
        help="make a Raspberry Pi OS SD card image that installs Voltbook on first boot",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--base", type=Path, required=True, help="Raspberry Pi OS Lite .img")
    parser.add_argument("--bundle", type=Path, required=True, help="voltbook-fw bundle's file")
    parser.add_argument("--release-pub", type=Path, required=True, help="release public key")
    parser.add_argument("--site", required=True, help="the site's id or name (as for claim)")
    parser.add_argument("--cloud", required=True, help="the cloud's URL, e.g. https://vb.example")
    parser.add_argument("--out", type=Path, required=True, help="the image to write (new file)")
    parser.add_argument(
        "--arch",
        default="aarch64",
        choices=ARCHES,
        help="the base image's arch: aarch64 (64-bit Raspberry Pi OS, default) or armv7l",
    )
    parser.add_argument(
        "--token",
        help="put a claim token on the card (warned: a secret on the card until first boot); "
        "by default it is typed at the box",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        pem = args.release_pub.read_bytes()
        if args.arch not in PI_ARCHES:
            print(f"warning: --arch {args.arch}: a Raspberry Pi runs aarch64 or armv7l",
                  file=sys.stderr)  # fmt: skip
        if args.token is not None:
            print(
                "warning: --token puts the claim token on the card's boot partition, readable "
                "by anyone holding the card until first boot moves it to /etc/voltbook "
                "(root only). It works once and expires; prefer typing it at the box.",
                file=sys.stderr,
            )
        made = make_image(
            base=args.base, bundle=args.bundle, release_pub_pem=pem, site=args.site,
            cloud=args.cloud, out=args.out, arch=args.arch, token=args.token,
        )  # fmt: skip
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return FAILED
    except (BadBundle, WrongBox, NotAPiImage, AlreadyHooked) as exc:
        print(f"error: refused, nothing written: {exc}", file=sys.stderr)
        return REFUSED
    except (ImageError, BundleError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return FAILED
    m = made.manifest
    print(
        f"{made.path}: Raspberry Pi OS with Voltbook bundle {m.version} ({m.arch}, {m.python}) "
        f"for site {args.site!r}, in {made.seconds:.1f} s (boot partition {made.boot.fat} at "
        f"byte {made.boot.start})\n"
        "next: write it to the card (rpi-imager: Use custom, no OS customisation; or dd), boot "
        "the Pi, wait for its two reboots, log in and follow the message on the screen "
        "(docs/pi-image.md)"
    )
    return 0
