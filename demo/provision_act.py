"""A demo act: an installer's path with a new concentrator, against the demo's running cloud.

1. An operator pre-assigns a node id to a new site (`POST /claims/nodes`); the installer asks
   for a claim token bound to it (`voltbook-fw claim --site S --node N`).
2. A release key is made and a bundle for this machine's arch built (`voltbook-fw bundle
   --wheelhouse --with-simulator`: this rehearsal box runs a simulated site, so its bundle
   carries the meter simulator, which a real site's never does): with no network, the wheels
   are this environment's own distributions zipped back (`demo/wheelhouse.py`) rather than
   `pip download`'s. It is installed into a throwaway
   root (`voltbook-fw install F --root DIR`: signature and hashes checked, a virtualenv made
   offline) and the installed `voltbook-edge --version` run. The box's site files are then
   written as the image's first boot leaves them: a simulated site in a temporary directory.
3. The box redeems the token (`voltbook-edge provision`): its keys are made on it, the cloud
   gives it the pre-assigned node id and a certificate for the broker's TLS listener.
4. The installer commissions the building against the simulated buses (`voltbook-fw
   commission`): the box's signed report is uploaded and the cloud's PDF written; its path is
   printed.
5. The box runs its installed runtime (the bundle's `voltbook-edge run`, a few poll cycles)
   and syncs over TLS with its new identity; the cloud sees the node online.

Skipped, saying why, when the cloud has no device CA (its broker is not the embedded Mosquitto).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from voltbook_fw import platforms
from voltbook_fw.cli import main as fw_main

from cloud.db.engine import session_factory
from cloud.people import auth
from cloud.server import RunningCloud
from cloud.services.broker import MosquittoBroker
from demo.site import write_demo_site
from demo.wheelhouse import ROOT, build_wheelhouse
from edge.cli import main as edge_main

INSTALLER = "inst-demo"
SITE = "East Hall"
NODE = "east-hall-box-1"
METERS = 4
RUN_S = 60.0  # at most this long for the box to come online and sync its ledger
INSTALLED_EDGE = "opt/voltbook/current/venv/bin/voltbook-edge"


def act_provision(workdir: Path, cloud: RunningCloud, operator: httpx.Client) -> float:
    """The act (see the module docstring); its wall time in seconds."""
    started = time.monotonic()
    print("\nact 6 — an installer provisions a new concentrator")
    if not isinstance(cloud.broker, MosquittoBroker):
        print("  skipped: the cloud's broker has no TLS listener and no device CA "
              "(install mosquitto for this act)")  # fmt: skip
        return time.monotonic() - started
    site = operator.post("/registry/sites", json={"name": SITE})
    site.raise_for_status()
    reserved = operator.post("/claims/nodes", json={"site": SITE, "node": NODE})
    reserved.raise_for_status()
    print(f"  operator pre-assigned node {NODE} to site {SITE} (POST /claims/nodes: "
          f"{reserved.json()['status']}, no key yet)")  # fmt: skip
    password = _installer(cloud)
    token = _claim(cloud, password)
    bundled = _bundle_and_install(workdir)
    box = workdir / "box"
    made = write_demo_site(box, METERS)
    print(f"  box: {box} ({len(made.meters)} simulated meters on its buses)")
    provisioned = _quiet(edge_main, ["provision", "--cloud", cloud.url, "--token", token,
                                     "--dir", str(box), "--force"])  # fmt: skip
    print(f"  voltbook-edge provision → {provisioned.strip().splitlines()[0]}")
    bearer = _bearer(cloud, password)
    token_file = box / "installer.token"
    token_file.write_text(bearer, encoding="utf-8")
    token_file.chmod(0o600)
    pdf = workdir / "commissioning.pdf"
    said = _quiet(fw_main, ["commission", "--config", str(made.site_toml), "--reads", "1",
                            "--upload", cloud.url, "--token-file", str(token_file),
                            "--pdf", str(pdf)], ok=(0, 1))  # fmt: skip
    for line in said.strip().splitlines()[-2:]:
        print(f"  voltbook-fw commission → {line}")
    installed = workdir / "root" / INSTALLED_EDGE
    synced = _run_until_synced(cloud, installed, made.site_toml, bearer)
    said = f"online over TLS, its ledger synced to seq {synced}" if synced else "NOT synced"
    print(f"  voltbook-edge run: {NODE} {said} in the cloud (GET /concentrators/{NODE})")
    took = time.monotonic() - started
    print(f"  act 6 took {took:.1f} s, bundle and install {bundled:.1f} s of it")
    return took


def _bundle_and_install(workdir: Path) -> float:
    """A signed bundle for this machine, built offline, installed into a throwaway root; the
    seconds it took (making the virtualenv is most of it)."""
    arch, key, root = platforms.box_arch(), workdir / "release.pem", workdir / "root"
    wheels = workdir / "wheelhouse"
    began = time.monotonic()
    build_wheelhouse(wheels, with_simulator=True)
    release_pub = root / "etc/voltbook/release.pub"  # as the image puts it on the box
    release_pub.parent.mkdir(parents=True)
    release_pub.write_text(_quiet(fw_main, ["release-key", "--out", str(key)]), encoding="ascii")
    bundle = workdir / f"voltbook-1-{arch}.tar"
    said = _quiet(fw_main, ["bundle", "--arch", arch, "--out", str(bundle), "--release-key",
                            str(key), "--version", "1", "--wheelhouse", str(wheels),
                            "--project", str(ROOT), "--with-simulator"])  # fmt: skip
    built = time.monotonic()
    print(f"  voltbook-fw bundle → {said.strip().splitlines()[-1]} ({built - began:.1f} s)")
    said = _quiet(fw_main, ["install", str(bundle), "--root", str(root)])
    print(f"  voltbook-fw install → {said.strip().splitlines()[0]}")
    edge = root / INSTALLED_EDGE
    version = subprocess.run([str(edge), "--version"], capture_output=True, text=True,
                             timeout=60, check=True).stdout.strip()  # fmt: skip
    took = time.monotonic() - began
    print(f"  {edge.relative_to(workdir)} --version → {version}")
    return took


def _installer(cloud: RunningCloud) -> str:
    password = secrets.token_urlsafe(16)
    with session_factory(cloud.engine).begin() as session:
        auth.create_user(session, INSTALLER, auth.Role.INSTALLER, password,
                         display_name="Demo installer", now=dt.datetime.now(dt.UTC))  # fmt: skip
    return password


def _claim(cloud: RunningCloud, password: str) -> str:
    """`voltbook-fw claim --site … --node …` as the installer; the token it prints."""
    os.environ["VOLTBOOK_PASSWORD"] = password
    try:
        printed = _quiet(fw_main, ["claim", "--site", SITE, "--node", NODE, "--valid", "1h",
                                   "--cloud", cloud.url, "--user", INSTALLER])  # fmt: skip
    finally:
        del os.environ["VOLTBOOK_PASSWORD"]
    lines = printed.strip().splitlines()
    print(f"  voltbook-fw claim --site {SITE} --node {NODE} → {lines[0]}")
    return lines[-1].split("--token ", 1)[1].strip()


def _bearer(cloud: RunningCloud, password: str) -> str:
    answer = httpx.post(cloud.url + "/auth/login", json={"user": INSTALLER, "password": password},
                        timeout=10)  # fmt: skip
    answer.raise_for_status()
    return str(answer.json()["token"])


def _quiet(main: Any, argv: list[str], *, ok: tuple[int, ...] = (0,)) -> str:
    """Run a command line in-process; what it printed (its exit code checked)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    if code not in ok:
        raise RuntimeError(f"{argv[0]} exited {code}: {err.getvalue() or out.getvalue()}")
    return out.getvalue()


def _run_until_synced(cloud: RunningCloud, edge: Path, site_toml: Path, bearer: str) -> int:
    """The installed `voltbook-edge run` (as on the box, with nothing of this checkout on its
    path) until the cloud says the node is online and holds its ledger (the subsidies and
    readings it booked); the cloud's head seq of the node, 0 if that never came."""
    command = [str(edge), "run", "--config", str(site_toml), "--speed", "60"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    box = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env=env)  # fmt: skip
    headers = {"Authorization": f"Bearer {bearer}"}
    try:
        deadline = time.monotonic() + RUN_S
        while time.monotonic() < deadline:
            found = httpx.get(f"{cloud.url}/concentrators/{NODE}", headers=headers, timeout=5)
            if found.status_code == 200 and found.json()["online"] and found.json()["head_seq"]:
                return int(found.json()["head_seq"])
            time.sleep(0.25)
        return 0
    finally:
        box.terminate()
        box.wait(timeout=30)
