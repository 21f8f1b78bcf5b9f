"""From the box to the paper: `voltbook-fw commission` runs `voltbook-edge commission` on a
simulated building (an extra meter, a relay that will not trip), uploads the signed report to
the real API on loopback with an installer's token, and writes the PDF; the cloud holds it."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from pypdf import PdfReader
from sqlalchemy import Engine, select
from voltbook_fw.cli import main

from cloud.app import create_app
from cloud.db.commissioning import CommissioningReport
from cloud.db.engine import session_factory
from cloud.ingest import concentrators
from cloud.people.auth import Role
from demo.sim.persist import MeterSpec, SimulatedBuilding
from demo.site import DemoSite, write_demo_site
from ledger.chain import NodeKey, load_public_key
from tests.cloud.api.conftest import add_user
from tests.cloud.conftest import Clock
from tests.cloud.fake_edge import T0
from tests.edge.runtime.conftest import ZONE

EXTRA = "202699000042"


@pytest.fixture
def served(engine: Engine, cloud_key: NodeKey, clock: Clock) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(engine, cloud_key, clock)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _building(tmp_path: Path) -> DemoSite:
    made = write_demo_site(tmp_path / "site", 3, tariff="flat", profiles=("constant",))
    building = SimulatedBuilding.open(made.directory / "sim", ZONE)
    building.add_meter(MeterSpec(EXTRA, "dlt645", "constant", 1_000_000))
    building.meters[made.meters[1]].state.keep_power = True
    building.save()
    return made


def _registered(tmp_path: Path, engine: Engine) -> tuple[DemoSite, Path]:
    """The building, its node registered with the cloud, and an installer's token file."""
    site = _building(tmp_path)
    with session_factory(engine).begin() as session:
        public = load_public_key((site.directory / "node.pub").read_bytes())
        concentrators.register(session, "edge-demo-0001", public, name="demo", now=T0)
    token = tmp_path / "token"
    token.write_text(add_user(engine, "fitter", Role.INSTALLER))
    return site, token


def test_commission_upload_and_print(tmp_path: Path, engine: Engine, served: str) -> None:
    site, token = _registered(tmp_path, engine)
    pdf, out = tmp_path / "report.pdf", tmp_path / "report.json"
    arguments = ["commission", "--config", str(site.site_toml), "--relay-test", "--out", str(out)]
    arguments += ["--upload", served, "--token-file", str(token), "--pdf", str(pdf)]
    code = main(arguments)
    assert code == 1  # written and uploaded, with things to fix
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.read_bytes())).pages)
    assert "计量点调试验收报告" in text and EXTRA in text and "需整改" in text
    with session_factory(engine)() as session:
        (row,) = session.scalars(select(CommissioningReport)).all()
    assert row.node == "edge-demo-0001" and row.uploaded_by == "fitter" and not row.clean
    assert out.exists()


def test_without_out_the_signed_report_is_kept_in_this_folder(
    tmp_path: Path, engine: Engine, served: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    site, token = _registered(tmp_path, engine)
    laptop = tmp_path / "laptop"
    laptop.mkdir()
    monkeypatch.chdir(laptop)
    code = main(["commission", "--config", str(site.site_toml), "--reads", "1",
                 "--upload", served, "--token-file", str(token)])  # fmt: skip
    assert code == 1  # uploaded, with the extra meter to fix
    (kept,) = laptop.glob("commissioning-*.json")  # the installer's copy, not a scratch file
    signed = json.loads(kept.read_bytes())
    with session_factory(engine)() as session:
        (row,) = session.scalars(select(CommissioningReport)).all()
    assert signed["report"]["node"] == row.node == "edge-demo-0001"


def test_pdf_without_upload_is_refused(tmp_path: Path) -> None:
    code = main(["commission", "--config", str(tmp_path / "site.toml"), "--pdf", "x.pdf"])
    assert code == 2
