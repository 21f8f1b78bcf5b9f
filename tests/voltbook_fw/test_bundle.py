"""Runtime bundles: built, signed, verified whole, and installed beside the running version.

Every refusal is checked to leave the box's root exactly as it was (files, bytes, links). The
installs are real: a virtualenv made with this Python, pip with no index, and the installed
`voltbook-edge --version` run. The wheels come from `wheelhouse.py` (no network).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from voltbook_fw import platforms
from voltbook_fw.archive import write_bundle
from voltbook_fw.bundle import build_bundle, runtime_units
from voltbook_fw.cli import main
from voltbook_fw.errors import BadBundle, BuildFailed, WrongBox
from voltbook_fw.install import install_bundle
from voltbook_fw.manifest import FileEntry, Manifest, decode, sign
from voltbook_fw.verify import Box, verify_bundle

from demo.wheelhouse import ROOT, build_wheelhouse
from ledger.chain import NodeKey, load_public_key, public_key_pem

ARCH = platforms.box_arch()
Members = list[tuple[tarfile.TarInfo, bytes]]


@pytest.fixture(scope="module")
def release() -> NodeKey:
    return NodeKey.generate()


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheelhouse")
    build_wheelhouse(folder)
    return folder


@pytest.fixture(scope="module")
def make_bundle(
    tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path, release: NodeKey
) -> Callable[[int], Path]:
    folder = tmp_path_factory.mktemp("bundles")
    built: dict[int, Path] = {}

    def make(version: int) -> Path:
        if version not in built:
            out = folder / f"voltbook-{version}-{ARCH}.tar"
            build_bundle(
                project=ROOT,
                arch=ARCH,
                version=version,
                release_key=release,
                out=out,
                wheelhouse=wheelhouse,
            )
            built[version] = out
        return built[version]

    return make


@pytest.fixture
def box(tmp_path: Path, release: NodeKey) -> Path:
    """A box's root that trusts the release key and holds a file of its own."""
    root = tmp_path / "root"
    (root / "etc/voltbook").mkdir(parents=True)
    (root / "etc/voltbook/release.pub").write_bytes(public_key_pem(release.public_key))
    (root / "etc/voltbook/site.toml").write_text("[site]\n")
    return root


def snapshot(root: Path) -> dict[str, str]:
    """Every path under `root` with its content hash or link target."""
    out = {}
    for path in sorted(root.rglob("*")):
        key = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[key] = "-> " + str(path.readlink())
        elif path.is_file():
            out[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[key] = "dir"
    return out


def members_of(bundle: Path) -> Members:
    with tarfile.open(bundle) as tar:
        return [(m, tar.extractfile(m).read() if m.isreg() else b"") for m in tar]  # type: ignore[union-attr]


def write_members(out: Path, members: Members) -> Path:
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out


def member(
    name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = ""
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info, data


def refused(root: Path, bundle: Path, error: type[Exception], match: str, **kw: str) -> None:
    """Installing `bundle` with the key the box trusts fails so, and the root is unchanged."""
    before = snapshot(root)
    key = load_public_key((root / "etc/voltbook/release.pub").read_bytes())
    with pytest.raises(error, match=match):
        install_bundle(bundle, root, key, **kw)
    assert snapshot(root) == before


def flip_in(name_part: str) -> Callable[[Members], Members]:
    def change(members: Members) -> Members:
        out = []
        for info, data in members:
            if name_part in info.name:
                middle = len(data) // 2
                out.append((info, data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1 :]))
            else:
                out.append((info, data))
        return out

    return change


def drop(name_part: str) -> Callable[[Members], Members]:
    return lambda members: [(i, d) for i, d in members if name_part not in i.name]


def add(*extra: tuple[tarfile.TarInfo, bytes]) -> Callable[[Members], Members]:
    return lambda members: [*members, *extra]


def resigned_manifest(edit: Callable[[dict[str, object]], None]) -> Callable[[Members], Members]:
    """The manifest edited; its signature kept."""

    def change(members: Members) -> Members:
        out = []
        for info, data in members:
            if info.name == "manifest.json":
                body = json.loads(data)
                edit(body)
                out.append((info, json.dumps(body, sort_keys=True, separators=(",", ":")).encode()))
            else:
                out.append((info, data))
        return out

    return change


def other_signature(members: Members) -> Members:
    forger = NodeKey.generate()
    manifest = next(d for i, d in members if i.name == "manifest.json")
    return [
        (i, forger.private_key.sign(manifest) if i.name == "manifest.sig" else d)
        for i, d in members
    ]


TAMPERED: dict[str, tuple[Callable[[Members], Members], str]] = {
    "a flipped byte in a wheel": (flip_in("cryptography-"), "SHA-256"),
    "a flipped byte in a unit": (flip_in("units/voltbook-edge"), "SHA-256"),
    "a missing wheel": (drop("wheels/pyserial-"), "lacks wheels/pyserial-"),
    "a missing signature": (drop("manifest.sig"), "no manifest.sig"),
    "an extra file": (add(member("units/evil.service", b"[Service]\n")), "not listed"),
    "a wrong signature": (other_signature, "signature is not the release key"),
    "a manifest edited": (resigned_manifest(lambda b: b.update(version=99)), "signature"),
    "a hash edited": (
        resigned_manifest(lambda b: b["files"][0].update(sha256="0" * 64)),  # type: ignore[index]
        "signature",
    ),
    "a ../ name": (add(member("../../etc/cron.d/evil", b"* * * * * root sh\n")), "only manifest"),
    "an absolute name": (add(member("/etc/cron.d/evil", b"x")), "only manifest"),
    "a folder": (add(member("units/x", kind=tarfile.DIRTYPE)), "not a regular file"),
    "a symlink": (add(member("units/a.service", kind=tarfile.SYMTYPE, link="/etc/shadow")), "link"),
    "a hard link": (
        add(member("units/b.service", kind=tarfile.LNKTYPE, link="manifest.sig")),
        "link",
    ),
    "a file twice": (lambda m: [*m, m[-1]], "twice"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_a_tampered_bundle_is_refused_and_nothing_installed(
    case: str, make_bundle: Callable[[int], Path], box: Path, tmp_path: Path
) -> None:
    change, match = TAMPERED[case]
    bundle = write_members(tmp_path / "tampered.tar", change(members_of(make_bundle(2))))
    refused(box, bundle, BadBundle, match, arch=ARCH)


@pytest.mark.slow  # builds a bundle: pip resolves its wheels, about a second
def test_a_bundle_signed_by_another_release_key_is_refused(
    wheelhouse: Path, box: Path, tmp_path: Path
) -> None:
    out = tmp_path / "other.tar"
    build_bundle(
        project=ROOT, arch=ARCH, version=9, release_key=NodeKey.generate(), out=out,
        wheelhouse=wheelhouse,
    )  # fmt: skip
    refused(box, out, BadBundle, "signature is not the release key")


def test_a_box_trusting_another_key_refuses_even_a_good_bundle(
    make_bundle: Callable[[int], Path], box: Path, release: NodeKey
) -> None:
    (box / "etc/voltbook/release.pub").write_bytes(public_key_pem(NodeKey.generate().public_key))
    before = snapshot(box)
    with pytest.raises(WrongBox, match="this box trusts release key"):
        install_bundle(make_bundle(2), box, release.public_key)
    assert snapshot(box) == before


def test_another_arch_is_refused(make_bundle: Callable[[int], Path], box: Path) -> None:
    other = "aarch64" if ARCH != "aarch64" else "x86_64"
    refused(box, make_bundle(2), WrongBox, f"this box is {other}", arch=other)


def installed_as(root: Path, version: int, release: NodeKey) -> None:
    """A box that runs `version` (its manifest as an install leaves it)."""
    folder = root / f"opt/voltbook/versions/{version}"
    folder.mkdir(parents=True)
    manifest = Manifest(version, ARCH, platforms.running_python_tag(), "0.1.0", release.key_id, ())
    (folder / "manifest.json").write_bytes(manifest.encode())
    (root / "opt/voltbook/current").symlink_to(f"versions/{version}")


@pytest.mark.parametrize("running", [2, 3])
def test_a_lower_or_equal_version_is_refused(
    running: int, make_bundle: Callable[[int], Path], box: Path, release: NodeKey
) -> None:
    installed_as(box, running, release)
    refused(box, make_bundle(2), WrongBox, f"version {running} is installed")


def test_garbage_and_truncated_files_are_refused(
    make_bundle: Callable[[int], Path], box: Path, tmp_path: Path
) -> None:
    whole = make_bundle(2).read_bytes()
    cases = [
        (b"", "not a readable .* tar: empty file"),
        (b"\x00\xff" * 700, "not a readable .* tar: bad checksum"),
        (b"\x00" * 10240, "has no manifest.json"),
        (whole[:3000], "has no manifest.sig"),
        (whole[:-20000], "unexpected end of data"),
    ]
    for number, (data, match) in enumerate(cases):
        path = tmp_path / f"bad-{number}.tar"
        path.write_bytes(data)
        refused(box, path, BadBundle, match, arch=ARCH)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
FIELD_NAMES = ["arch", "files", "format", "key_id", "project", "python", "simulator", "version"]


@settings(max_examples=100, deadline=None)
@given(
    st.binary(max_size=2000)
    | st.dictionaries(st.sampled_from(FIELD_NAMES), JSON).map(lambda d: json.dumps(d).encode())
)
def test_any_manifest_bytes_decode_or_raise_bad_bundle(data: bytes) -> None:
    with contextlib.suppress(BadBundle):
        assert isinstance(decode(data), Manifest)


@pytest.mark.parametrize("simulator", [False, True])
def test_manifest_round_trips(simulator: bool) -> None:
    entry = FileEntry("wheels/a-1-py3-none-any.whl", "ab" * 32, 10)
    manifest = Manifest(7, "armv7l", "cp311", "0.1.0", "00" * 8, (entry,), simulator)
    assert decode(manifest.encode()) == manifest
    assert (b'"simulator":true' in manifest.encode()) is simulator


@pytest.mark.parametrize("value", [False, 1, "true", None])
def test_a_simulator_field_is_true_or_absent(value: object) -> None:
    body = json.loads(Manifest(7, "armv7l", "cp311", "0.1.0", "00" * 8, ()).encode())
    with pytest.raises(BadBundle, match="simulator is true when present"):
        decode(json.dumps({**body, "simulator": value}).encode())


@pytest.mark.slow  # builds a bundle: pip resolves its wheels, about a second
def test_the_same_inputs_give_the_same_bundle_bytes(
    make_bundle: Callable[[int], Path], wheelhouse: Path, release: NodeKey, tmp_path: Path
) -> None:
    again = tmp_path / "again.tar"
    build_bundle(
        project=ROOT, arch=ARCH, version=2, release_key=release, out=again, wheelhouse=wheelhouse
    )
    assert again.read_bytes() == make_bundle(2).read_bytes()
    names = [i.name for i, _ in members_of(again)]
    assert names[:2] == ["manifest.json", "manifest.sig"]
    assert "units/voltbook-updater.service" in names


def test_a_wheelhouse_missing_a_pin_is_refused(
    wheelhouse: Path, release: NodeKey, tmp_path: Path
) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    for wheel in wheelhouse.glob("*.whl"):
        if not wheel.name.startswith("tinydb-"):
            (partial / wheel.name).write_bytes(wheel.read_bytes())
    with pytest.raises(BuildFailed, match=r"no .* wheel of tinydb==4\.9\.0"):
        build_bundle(
            project=ROOT, arch=ARCH, version=1, release_key=release, out=tmp_path / "b.tar",
            wheelhouse=partial,
        )  # fmt: skip
    assert not (tmp_path / "b.tar").exists()


def test_a_wheelhouse_missing_a_dependency_of_a_pin_is_refused(
    wheelhouse: Path, release: NodeKey, tmp_path: Path
) -> None:
    """cffi is no pin of ours, but cryptography needs it: the build resolves as the box will."""
    partial = tmp_path / "partial"
    partial.mkdir()
    for wheel in wheelhouse.glob("*.whl"):
        if not wheel.name.startswith("cffi-"):
            (partial / wheel.name).write_bytes(wheel.read_bytes())
    with pytest.raises(BuildFailed, match=r"do not install offline(.|\n)*cffi"):
        build_bundle(
            project=ROOT, arch=ARCH, version=1, release_key=release, out=tmp_path / "b.tar",
            wheelhouse=partial,
        )  # fmt: skip
    assert not (tmp_path / "b.tar").exists()


def test_a_runtime_unit_without_watchdog_is_refused(tmp_path: Path) -> None:
    source = (ROOT / "edge/systemd/voltbook-edge.service").read_text()
    assert "WatchdogSec=120" in source
    (tmp_path / "voltbook-edge.service").write_text(source.replace("WatchdogSec=120\n", ""))
    (tmp_path / "voltbook-updater.service").write_text("[Service]\n")
    with pytest.raises(BuildFailed, match="WatchdogSec"):
        runtime_units(tmp_path)


@pytest.mark.parametrize(
    ("name", "arch", "fits"),
    [
        ("cryptography-50.0.2-cp311-abi3-manylinux_2_34_aarch64.whl", "aarch64", True),
        ("cryptography-50.0.2-cp311-abi3-manylinux_2_34_aarch64.whl", "x86_64", False),
        ("cryptography-50.0.2-cp311-abi3-manylinux_2_38_aarch64.whl", "aarch64", False),
        ("cffi-2.1.1-cp311-cp311-manylinux2014_armv7l.whl", "armv7l", True),
        ("cffi-2.1.1-cp312-cp312-manylinux2014_armv7l.whl", "armv7l", False),
        ("pyserial-3.5-py2.py3-none-any.whl", "armv7l", True),
        ("x-1-cp311-cp311-win_amd64.whl", "x86_64", False),
    ],
)
def test_wheel_tags_decide_what_a_bundle_takes(name: str, arch: str, fits: bool) -> None:
    assert platforms.wheel_fits(name, arch, "cp311") is fits


def run_version(root: Path) -> str:
    script = root / "opt/voltbook/current/venv/bin/voltbook-edge"
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout.strip()


@pytest.mark.slow
def test_install_into_a_root_then_run_the_installed_runtime(
    make_bundle: Callable[[int], Path], box: Path, release: NodeKey
) -> None:
    started = time.monotonic()
    done = install_bundle(make_bundle(2), box, release.public_key, arch=ARCH)
    assert time.monotonic() - started < 60
    assert (done.version, done.previous) == (2, None)
    assert (box / "opt/voltbook/current").readlink() == Path("versions/2")
    assert run_version(box) == "voltbook-edge 0.1.0 (bundle 2)"
    unit = (box / "etc/systemd/system/voltbook-edge.service").read_text()
    assert "WatchdogSec=120" in unit
    assert "ExecStart=/opt/voltbook/current/venv/bin/voltbook-edge run" in unit
    assert (box / "etc/systemd/system/voltbook-updater.service").exists()
    assert (box / "etc/voltbook/site.toml").read_text() == "[site]\n"


@pytest.mark.slow
@pytest.mark.timeout(300)  # three real installs, ~10 s each, more on a loaded runner
def test_an_update_keeps_the_previous_version_and_a_lower_one_is_refused(
    make_bundle: Callable[[int], Path], box: Path, release: NodeKey
) -> None:
    for version in (2, 3):
        install_bundle(make_bundle(version), box, release.public_key, arch=ARCH)
    base = box / "opt/voltbook"
    assert (base / "current").readlink() == Path("versions/3")
    assert (base / "previous").readlink() == Path("versions/2")
    assert run_version(box) == "voltbook-edge 0.1.0 (bundle 3)"
    assert (base / "versions/2/venv/bin/voltbook-edge").exists()  # ready to switch back
    refused(box, make_bundle(2), WrongBox, "version 3 is installed", arch=ARCH)
    refused(box, make_bundle(3), WrongBox, "version 3 is installed", arch=ARCH)
    install_bundle(make_bundle(4), box, release.public_key, arch=ARCH)
    assert sorted(p.name for p in (base / "versions").iterdir()) == ["3", "4"]
    assert (base / "previous").readlink() == Path("versions/3")


def test_the_cli_refuses_with_a_sentence_and_exit_2(
    make_bundle: Callable[[int], Path],
    box: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bundle = write_members(tmp_path / "t.tar", drop("wheels/tinydb-")(members_of(make_bundle(2))))
    before = snapshot(box)
    assert main(["install", str(bundle), "--root", str(box), "--arch", ARCH]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"error: {bundle}: refused, nothing installed: the bundle lacks wheels/tinydb-"
    )
    assert snapshot(box) == before


def test_release_key_prints_its_public_key_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "release.pem"
    assert main(["release-key", "--out", str(key_file)]) == 0
    key = NodeKey.from_pem(key_file.read_bytes())
    assert capsys.readouterr().out.encode() == public_key_pem(key.public_key)
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert main(["release-key", "--out", str(key_file)]) == 2
    assert NodeKey.from_pem(key_file.read_bytes()).key_id == key.key_id


SMALL_FILES = {
    "units/voltbook-edge.service": b"[Service]\nWatchdogSec=120\n",
    "wheels/a-1-py3-none-any.whl": bytes(range(256)) * 3,
}


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory: pytest.TempPathFactory, release: NodeKey) -> bytes:
    folder = tmp_path_factory.mktemp("small")
    files = []
    for name, data in SMALL_FILES.items():
        path = folder / name.replace("/", "_")
        path.write_bytes(data)
        files.append((name, path))
    entries = tuple(
        FileEntry(n, hashlib.sha256(d).hexdigest(), len(d)) for n, d in SMALL_FILES.items()
    )
    manifest = Manifest(5, ARCH, platforms.running_python_tag(), "0.1.0", release.key_id, entries)
    out = folder / "small.tar"
    write_bundle(out, *sign(manifest, release), files)
    return out.read_bytes()


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_a_bundle_with_any_bytes_changed_is_refused_or_yields_exactly_what_was_signed(
    small_bundle: bytes,
    release: NodeKey,
    tmp_path_factory: pytest.TempPathFactory,
    data: st.DataObject,
) -> None:
    """Tar padding may change unnoticed; what is installed may not."""
    raw = bytearray(small_bundle)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    if data.draw(st.booleans()):
        raw = raw[:cut]
    work = tmp_path_factory.mktemp("mutated")
    bundle = work / "b.tar"
    bundle.write_bytes(bytes(raw))
    staging = work / "staging"
    staging.mkdir()
    box = Box(ARCH, platforms.running_python_tag(), installed=0)
    try:
        checked = verify_bundle(bundle, release.public_key, box, staging)
    except BadBundle:
        return
    for name, content in SMALL_FILES.items():
        assert (checked.staging / name).read_bytes() == content
    assert sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file()) == sorted(
        SMALL_FILES
    )
