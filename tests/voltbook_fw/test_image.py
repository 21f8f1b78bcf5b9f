"""`voltbook-fw image` and the first-boot script it puts on the card.

The base is a small image built here as pi-gen lays one out: an MBR, a FAT32 boot partition
(made with mtools' `mformat`) holding cmdline.txt and config.txt at 1 MiB, and a Linux partition
entry after it. The bundle is conftest's signed `good` one (version 3, this machine's arch).
The first-boot script runs for real against a throwaway root and boot folder: the bundle's own
wheels install it, `useradd --prefix` makes the user inside that root.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from voltbook_fw import pi_image, platforms
from voltbook_fw.cli import main
from voltbook_fw.errors import AlreadyHooked, BadBundle, ImageError, NotAPiImage, WrongBox
from voltbook_fw.fat import FatPartition
from voltbook_fw.image import firstrun_script, make_image

from ledger.chain import NodeKey, public_key_pem

ARCH = platforms.box_arch()  # conftest's bundles are built for this machine

MTOOLS = all(shutil.which(tool) for tool in ("mformat", "mcopy", "mmd"))
if not MTOOLS and os.environ.get("REQUIRE_REAL_SERVICES") != "1":
    pytest.skip(
        "mtools is not installed (apt install mtools; `make` installs it as root)",
        allow_module_level=True,
    )

MIB = 1 << 20
BOOT_AT = MIB
BOOT_SECTORS = 69_632  # 34 MiB: enough clusters for FAT32
ROOT_SECTORS = 8_192
CMDLINE = b"console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 "
CMDLINE += b"fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n"
CONFIG = b"# http://rptl.io/configtxt\ndtparam=audio=on\narm_64bit=1\n[all]\n"
SITE = "East Gate Market"
CLOUD = "https://vb.example"
TOKEN = "tok_" + "A" * 40


def mbr(entries: list[tuple[int, int, int]]) -> bytes:
    """An MBR sector with (type, first sector, sectors) entries."""
    sector = bytearray(512)
    for number, (kind, first, count) in enumerate(entries):
        struct.pack_into("<B3xB3xII", sector, 446 + 16 * number, 0, kind, first, count)
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


def fat_image(path: Path, files: dict[str, bytes], kind: int = 0x0C) -> Path:
    """An image of an MBR, a FAT32 partition with `files` and a Linux partition entry."""
    root_at = BOOT_AT // 512 + BOOT_SECTORS
    with path.open("wb") as handle:
        handle.write(mbr([(kind, BOOT_AT // 512, BOOT_SECTORS), (0x83, root_at, ROOT_SECTORS)]))
        handle.truncate((root_at + ROOT_SECTORS) * 512)
    drive = f"{path}@@{BOOT_AT}"
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    subprocess.run(["mformat", "-i", drive, "-F", "-T", str(BOOT_SECTORS), "-v", "BOOTFS", "::"],
                   env=env, check=True, capture_output=True)  # fmt: skip
    fat = FatPartition(path, BOOT_AT)
    for name, data in files.items():
        fat.write(name, data)
    return path


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("base")
    return fat_image(folder / "raspios.img", {"cmdline.txt": CMDLINE, "config.txt": CONFIG})


@pytest.fixture
def base(pristine: Path, tmp_path: Path) -> Path:
    return Path(shutil.copyfile(pristine, tmp_path / "raspios.img"))


def build(base: Path, bundle: Path, release: NodeKey, out: Path, **kw: str) -> Path:
    make_image(
        base=base, bundle=bundle, release_pub_pem=public_key_pem(release.public_key), site=SITE,
        cloud=CLOUD, out=out, arch=ARCH, **kw,
    )  # fmt: skip
    return out


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_image_holds_every_file_byte_for_byte_and_the_hook_once(
    base: Path, bundles: dict[str, Path], release: NodeKey, tmp_path: Path
) -> None:
    before = digest(base)
    out = build(base, bundles["good"], release, tmp_path / "sd.img")
    assert digest(base) == before
    fat = FatPartition(out, BOOT_AT)
    assert fat.read("voltbook/bundle.tar") == bundles["good"].read_bytes()
    assert fat.read("firstrun.sh") == firstrun_script()
    assert fat.read("firstrun.sh") == (Path(pi_image.__file__).parent / "firstrun.sh").read_bytes()
    assert fat.read("voltbook/release.pub") == public_key_pem(release.public_key)
    assert fat.read("voltbook/settings.conf") == f"site={SITE}\ncloud={CLOUD}\n".encode()
    assert fat.read("voltbook/claim.token") is None  # no secret unless asked
    assert fat.read("config.txt") == CONFIG
    cmdline = fat.read("cmdline.txt")
    assert cmdline == CMDLINE.rstrip(b"\n") + b" " + pi_image.HOOK.encode() + b"\n"
    assert cmdline is not None and cmdline.count(b"systemd.run=") == 1
    # Outside the boot partition not a byte changed (the MBR, the root partition).
    old, new = base.read_bytes(), out.read_bytes()
    assert len(old) == len(new)
    assert new[:BOOT_AT] == old[:BOOT_AT]
    end = BOOT_AT + BOOT_SECTORS * 512
    assert new[end:] == old[end:]


def test_preparing_a_prepared_image_again_is_refused(
    base: Path, bundles: dict[str, Path], release: NodeKey, tmp_path: Path
) -> None:
    once = build(base, bundles["good"], release, tmp_path / "once.img")
    with pytest.raises(AlreadyHooked, match=r"already has a firstrun\.sh"):
        build(once, bundles["good"], release, tmp_path / "twice.img")
    assert not (tmp_path / "twice.img").exists()
    assert not (tmp_path / "twice.img.partial").exists()
    # The Imager's own hook, without a script of ours: refused too.
    imager = fat_image(tmp_path / "imager.img", {"config.txt": CONFIG, "cmdline.txt": (
        CMDLINE.rstrip(b"\n") + b" systemd.run=/boot/firstrun.sh systemd.unit=kernel-command-line"
        b".target\n")})  # fmt: skip
    with pytest.raises(AlreadyHooked, match="already runs a first-boot script"):
        build(imager, bundles["good"], release, tmp_path / "x.img")
    with pytest.raises(ImageError, match="never overwritten"):
        build(base, bundles["good"], release, once)


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("empty", "no MBR"),
        ("noise", "no MBR"),
        ("xz", "xz-compressed"),
        ("gpt", "GPT"),
        ("linux first", "type 0x83, not FAT"),
        ("no root partition", "second partition is of type 0x00"),
        ("cut short", "outside the file"),
        ("no FAT in it", "no FAT file system"),
        ("no cmdline.txt", "no cmdline.txt"),
        ("no config.txt", "no config.txt"),
        ("two-line cmdline.txt", "several lines"),
    ],
)
def test_a_base_that_is_not_a_pi_image_is_refused_in_words(
    case: str, match: str, bundles: dict[str, Path], release: NodeKey, tmp_path: Path
) -> None:
    path = tmp_path / "base.img"
    good_entries = [(0x0C, 2048, BOOT_SECTORS), (0x83, 2048 + BOOT_SECTORS, ROOT_SECTORS)]
    if case == "empty":
        path.write_bytes(b"")
    elif case == "noise":
        path.write_bytes(os.urandom(4096)[:510] + b"\x00\x00")
    elif case == "xz":
        path.write_bytes(b"\xfd7zXZ\x00" + bytes(1000))
    elif case == "gpt":
        path.write_bytes(mbr([(0xEE, 1, 100)]) + bytes(4096))
    elif case == "linux first":
        path.write_bytes(mbr(good_entries[::-1]) + bytes(4096))
    elif case == "no root partition":
        path.write_bytes(mbr(good_entries[:1]) + bytes(4096))
    elif case == "cut short":
        path.write_bytes(mbr(good_entries) + bytes(4096))
    elif case == "no FAT in it":
        path.write_bytes(mbr(good_entries))
        with path.open("r+b") as handle:
            handle.truncate((2048 + BOOT_SECTORS + ROOT_SECTORS) * 512)
    else:
        files = {"cmdline.txt": CMDLINE, "config.txt": CONFIG}
        if case == "two-line cmdline.txt":
            files["cmdline.txt"] = CMDLINE + b"root=/dev/sda2\n"
        else:
            del files[case.removeprefix("no ")]
        fat_image(path, files)
    with pytest.raises(NotAPiImage, match=match):
        build(path, bundles["good"], release, tmp_path / "sd.img")
    assert list(tmp_path.glob("sd.img*")) == []


def test_a_bundle_that_is_not_the_release_keys_never_goes_on_a_card(
    base: Path, bundles: dict[str, Path], release: NodeKey, tmp_path: Path
) -> None:
    tampered = flipped(bundles["good"], tmp_path / "tampered.tar", "units/voltbook-edge.service")
    with pytest.raises(BadBundle, match="SHA-256"):
        build(base, tampered, release, tmp_path / "sd.img")
    with pytest.raises(BadBundle, match="signature is not the release key"):
        build(base, bundles["good"], NodeKey.generate(), tmp_path / "sd.img")
    other = "aarch64" if ARCH != "aarch64" else "armv7l"
    with pytest.raises(WrongBox, match=f"bundle is for {ARCH}"):
        make_image(
            base=base, bundle=bundles["good"], site=SITE, cloud=CLOUD, arch=other,
            release_pub_pem=public_key_pem(release.public_key), out=tmp_path / "sd.img",
        )  # fmt: skip
    assert list(tmp_path.glob("sd.img*")) == []


@pytest.mark.parametrize(
    ("site", "cloud", "match"),
    [
        ("", CLOUD, "--site"),
        ("a'; rm -rf / #", CLOUD, "--site"),
        ("$(reboot)", CLOUD, "--site"),
        (SITE, "ftp://x", "--cloud"),
        (SITE, "https://vb.example/$(id)", "--cloud"),
        (SITE, "https://vb example", "--cloud"),
    ],
)
def test_site_and_cloud_that_would_not_paste_safely_are_refused(
    site: str, cloud: str, match: str
) -> None:
    with pytest.raises(ImageError, match=match):
        pi_image.settings_text(site, cloud)


def test_the_cli_warns_when_a_token_goes_on_the_card(
    base: Path,
    bundles: dict[str, Path],
    release: NodeKey,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pub = tmp_path / "release.pub"
    pub.write_bytes(public_key_pem(release.public_key))
    out = tmp_path / "sd.img"
    argv = ["image", "--base", str(base), "--bundle", str(bundles["good"]),
            "--release-pub", str(pub), "--site", SITE, "--cloud", CLOUD, "--out", str(out),
            "--arch", ARCH]  # fmt: skip
    assert main([*argv, "--token", TOKEN]) == 0
    said = capsys.readouterr()
    assert "warning: --token puts the claim token on the card" in said.err
    assert "bundle 3" in said.out
    assert FatPartition(out, BOOT_AT).read("voltbook/claim.token") == f"{TOKEN}\n".encode()
    assert main([*argv, "--token", TOKEN]) == 3  # exists: never overwritten
    out.unlink()
    assert main([*argv, "--bundle", str(pub)]) == 2  # not a bundle
    assert "refused, nothing written" in capsys.readouterr().err


def test_the_hook_is_appended_once_to_a_one_line_cmdline() -> None:
    assert pi_image.with_hook(b"root=PARTUUID=x rootwait") == (
        b"root=PARTUUID=x rootwait " + pi_image.HOOK.encode() + b"\n"
    )
    assert pi_image.with_hook(b"a b\r\n").count(b"systemd.run=") == 1
    with pytest.raises(AlreadyHooked):
        pi_image.with_hook(pi_image.with_hook(b"root=x"))
    for bad in (b"", b" \n", b"\xff\xfe", b"a\nb\n"):
        with pytest.raises(NotAPiImage):
            pi_image.with_hook(bad)


MBR_ENTRY = st.tuples(
    st.sampled_from([0x00, 0x01, 0x06, 0x0B, 0x0C, 0x0E, 0x83, 0xEE, 0x07]),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
)


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=3000)
    | st.lists(MBR_ENTRY, min_size=0, max_size=4).flatmap(
        lambda entries: st.binary(max_size=2000).map(lambda tail: mbr(entries) + tail)
    )
)
def test_any_bytes_as_a_base_give_a_partition_or_not_a_pi_image(data: bytes) -> None:
    with contextlib.suppress(NotAPiImage):
        boot = pi_image.find_boot_partition(lambda at, n: data[at : at + n], len(data))
        assert boot.start > 0 and boot.start + boot.size <= len(data)
        assert boot.fat in ("FAT12", "FAT16", "FAT32")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=100).map(str.encode))
def test_any_cmdline_bytes_give_a_hooked_line_or_our_refusal(data: bytes) -> None:
    with contextlib.suppress(NotAPiImage, AlreadyHooked):
        hooked = pi_image.with_hook(data)
        assert hooked.endswith(b" " + pi_image.HOOK.encode() + b"\n")
        assert hooked.count(b"\n") == 1 and hooked.count(b"systemd.run=") == 1


def flipped(bundle: Path, out: Path, name: str) -> Path:
    """The bundle with one byte of member `name` changed (the manifest and signature kept)."""
    with tarfile.open(bundle) as source, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for member in source.getmembers():
            data = source.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == name:
                data = data[:10] + bytes([data[10] ^ 1]) + data[11:]
            tar.addfile(member, io.BytesIO(data))
    return out


# -- the first boot, run against folders ------------------------------------------------------

ON_THE_CARD = ("firstrun.sh", "cmdline.txt", "config.txt", "voltbook/bundle.tar",
               "voltbook/release.pub", "voltbook/settings.conf")  # fmt: skip
ACCOUNTS = {  # a fresh Raspberry Pi OS's, cut short
    "passwd": "root:x:0:0:root:/root:/bin/bash\n",
    "group": "root:x:0:\ndialout:x:20:\ngpio:x:997:\nspi:x:999:\n",
    "shadow": "root:*:19000:0:99999:7:::\n",
    "gshadow": "root:*::\ndialout:*::\ngpio:!::\nspi:!::\n",
}


def make_card(image: Path, root: Path, boot: Path, token: bool) -> None:
    """The image's boot partition as the Pi mounts it, read back out of the image; an empty
    root but for the accounts files."""
    if os.geteuid() != 0 and os.environ.get("REQUIRE_REAL_SERVICES") != "1":
        pytest.skip("the first boot makes a user and chowns its folders: run as root")
    fat = FatPartition(image, BOOT_AT)
    for name in (*ON_THE_CARD, *(["voltbook/claim.token"] if token else [])):
        (boot / name).parent.mkdir(parents=True, exist_ok=True)
        (boot / name).write_bytes(fat.read(name) or b"")
    (root / "etc").mkdir(parents=True)
    for name, text in ACCOUNTS.items():
        (root / "etc" / name).write_text(text)


def first_boot(boot: Path, root: Path) -> subprocess.CompletedProcess[str]:
    """The script as systemd runs it, with a Python that has no Voltbook on its path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env |= {"ROOT": str(root), "BOOT": str(boot)}
    env["PYTHON"] = getattr(sys, "_base_executable", sys.executable)
    return subprocess.run(["sh", str(boot / "firstrun.sh")], env=env, capture_output=True,
                          text=True, timeout=280, check=False)  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(300)  # a real install: a virtualenv and pip, ~10 s, more on a loaded runner
@pytest.mark.parametrize("token", [False, True], ids=["token typed at the box", "token on card"])
def test_first_boot_installs_the_bundle_and_leaves_the_box_waiting_for_provision(
    token: bool, base: Path, bundles: dict[str, Path], release: NodeKey, tmp_path: Path
) -> None:
    boot, root = tmp_path / "boot-firmware", tmp_path / "root"
    image = build(base, bundles["good"], release, tmp_path / "sd.img",
                  **({"token": TOKEN} if token else {}))  # fmt: skip
    make_card(image, root, boot, token)
    done = first_boot(boot, root)
    assert done.returncode == 0, done.stdout + done.stderr
    base = root / "opt/voltbook"
    assert (base / "current").readlink() == Path("versions/3")
    version = subprocess.run([str(base / "current/venv/bin/voltbook-edge"), "--version"],
                             capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    assert version.stdout.strip() == "voltbook-edge 0.1.0 (bundle 3)"
    assert (root / "etc/voltbook/release.pub").read_bytes() == public_key_pem(release.public_key)
    units = root / "etc/systemd/system"
    for unit in ("voltbook-edge.service", "voltbook-updater.service"):
        assert (units / unit).is_file()
        assert (units / "multi-user.target.wants" / unit).readlink() == Path(
            f"/etc/systemd/system/{unit}"
        )
    dropin = (units / "voltbook-edge.service.d/10-provisioned.conf").read_text()
    assert "ConditionPathExists=/etc/voltbook/site.toml" in dropin
    user = next(line for line in (root / "etc/passwd").read_text().splitlines()
                if line.startswith("voltbook:")).split(":")  # fmt: skip
    assert user[5:] == ["/var/lib/voltbook", "/usr/sbin/nologin"]
    assert "dialout:x:20:voltbook" in (root / "etc/group").read_text()
    assert "spi:x:999:voltbook" in (root / "etc/group").read_text()
    data = (root / "var/lib/voltbook").stat()
    assert (data.st_uid, data.st_gid, data.st_mode & 0o7777) == (int(user[2]), int(user[3]), 0o750)
    etc = (root / "etc/voltbook").stat()
    assert (etc.st_uid, etc.st_gid, etc.st_mode & 0o7777) == (0, int(user[3]), 0o1770)
    assert (root / "usr/local/bin/voltbook-edge").readlink() == Path(
        "/opt/voltbook/current/venv/bin/voltbook-edge"
    )
    # Its hook gone, exactly: the Pi's next boot is a normal one.
    assert (boot / "cmdline.txt").read_bytes() == CMDLINE
    assert not (boot / "firstrun.sh").exists()
    assert not (boot / "voltbook/bundle.tar").exists()
    if token:  # passed with --token: moved off the card, root's only
        assert (root / "etc/voltbook/claim.token").read_text() == f"{TOKEN}\n"
        assert (root / "etc/voltbook/claim.token").stat().st_mode & 0o777 == 0o600
        assert not (boot / "voltbook/claim.token").exists()
        typed = '"$(sudo cat /etc/voltbook/claim.token)"'
    else:
        assert not (root / "etc/voltbook/claim.token").exists()
        typed = "<TOKEN>"
    told = f"voltbook-edge provision --cloud {CLOUD} --site '{SITE}' --token {typed}"
    for message in (root / "etc/motd.d/voltbook", root / "etc/issue.d/voltbook.issue"):
        assert told in message.read_text()
    log = (boot / "voltbook/firstboot.log").read_text()
    assert "Voltbook (bundle 3) is installed and waits for its identity" in log

    # Power lost after the switch, before the hook went: the next boot runs it again, which
    # finds bundle 3 running and finishes the job.
    for name in ("firstrun.sh", "voltbook/bundle.tar", "cmdline.txt"):
        (boot / name).write_bytes(FatPartition(image, BOOT_AT).read(name) or b"")
    again = first_boot(boot, root)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "this bundle's version already runs" in again.stdout
    assert (base / "current").readlink() == Path("versions/3")
    assert (boot / "cmdline.txt").read_bytes() == CMDLINE
    assert told in (root / "etc/motd.d/voltbook").read_text()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_first_boot_refuses_a_tampered_bundle_installs_nothing_and_unhooks(
    base: Path, bundles: dict[str, Path], release: NodeKey, tmp_path: Path
) -> None:
    boot, root = tmp_path / "boot-firmware", tmp_path / "root"
    make_card(build(base, bundles["good"], release, tmp_path / "sd.img"), root, boot, False)
    bundle = boot / "voltbook/bundle.tar"
    flipped(Path(shutil.copyfile(bundle, boot / "good.tar")), bundle, "units/voltbook-edge.service")
    (boot / "good.tar").unlink()
    accounts = {name: (root / "etc" / name).read_text() for name in ACCOUNTS}
    done = first_boot(boot, root)
    assert done.returncode == 0, done.stdout + done.stderr  # so systemd reboots, unhooked
    assert not (root / "opt").exists()
    assert not (root / "etc/systemd").exists()
    assert not (root / "etc/voltbook").exists()
    assert {name: (root / "etc" / name).read_text() for name in ACCOUNTS} == accounts
    assert (boot / "cmdline.txt").read_bytes() == CMDLINE
    assert (boot / "firstrun.sh").exists() and bundle.exists()  # kept, to run it again
    motd = (root / "etc/motd.d/voltbook").read_text()
    assert "Voltbook first boot FAILED: error: " in motd
    assert "nothing installed: units/voltbook-edge.service does not match its SHA-256" in motd
    assert f"sudo sh {boot}/firstrun.sh" in motd
