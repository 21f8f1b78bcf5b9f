"""The errors of `voltbook-fw`'s bundle and image commands: each message says what to do.

`BundleError` is the root. `BadBundle`: the file is not what the release key signed (the peer's
fault: tampered, truncated, forged or malformed), never install it. `WrongBox`: a good bundle
that is not for this box (another architecture or Python, not newer than what runs). `BuildFailed`
and `InstallFailed`: our side could not finish (pip, disk, a missing wheel).

`ImageError` is the root of `voltbook-fw image`'s own: `NotAPiImage` (the base is something
else), `AlreadyHooked` (the base was prepared before); an ImageError itself is a bad option or
mtools failing. The bundle it carries is refused with the bundle errors above.
"""

from __future__ import annotations


class BundleError(Exception):
    """Anything that stops a bundle being built or installed; the message is a sentence."""


class BadBundle(BundleError):
    """The bundle is damaged, forged or malformed: nothing of it is used."""


class WrongBox(BundleError):
    """A well-signed bundle this box must not install (arch, Python, version)."""


class BuildFailed(BundleError):
    """The bundle could not be built (a wheel missing, pip failed, a unit without watchdog)."""


class InstallFailed(BundleError):
    """A verified bundle could not be installed; the running version is left as it was."""


class ImageError(Exception):
    """`voltbook-fw image` could not make the SD card image; nothing was written."""


class NotAPiImage(ImageError):
    """The base is not a Raspberry Pi OS image (no MBR, no FAT boot partition, no cmdline.txt)."""


class AlreadyHooked(ImageError):
    """The base already runs a first-boot script: prepared before, by us or by the Imager."""
