"""A demo act: the cloud, the broker and a simulated concentrator, and a top-up that closes a
relay the concentrator tripped for arrears.

`act_cloud(workdir)` starts the whole cloud in-process with its embedded defaults (SQLite, and
mosquitto from PATH or the in-process broker) plus the broker's plain loopback listener for
the demo (`[broker] plain_port`; real concentrators use its TLS listener with a certificate),
writes a 30-shop demo site whose `[cloud]` section points at that listener, makes an operator
user and logs in (`POST /auth/login`; every later request carries its bearer token),
registers the concentrator through the HTTP API, and runs the real runtime with its real MQTT
sync on a virtual clock. When a tenant is cut off for arrears, the operator tops the account
up through `POST /recharges`: the cloud books a pending transfer in its own chain and sends a
signed command; the concentrator applies it exactly once, closes the relay at its next poll
and uploads its ledger; the cloud posts the pending transfer when the concentrator's entry
arrives. Every step is printed as the operator and the merchant see it, and the act ends by
checking the operator log's hash chain.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from cloud.config import ApiSettings, load_config
from cloud.db.engine import session_factory
from cloud.people import auth
from cloud.server import RunningCloud, serve_in_thread
from demo.operations_act import Desk, run_operations
from demo.site import write_demo_site
from edge.rules.decisions import RelayCommand
from edge.runtime.boot import boot
from edge.runtime.clock import ManualClock
from edge.runtime.cycle import Runtime
from edge.site import load_site
from edge.sync.service import SyncService

POLL = dt.timedelta(hours=2)
TOP_UP_FEN = 20_000
WAIT_S = 20.0  # real seconds any one step may take before the act gives up
OPERATOR = "op-demo"
FINANCE = "fin-demo"


def _cloud_section(cloud: RunningCloud) -> str:
    public = cloud.key.public_key.public_bytes_raw().hex()
    return (
        "\n[cloud]\n"
        'host = "127.0.0.1"\n'
        f"port = {cloud.plain_port}\n"
        f'cloud_public_key = "{public}"\n'
        "rate_bytes_s = 0\n"
        "ack_timeout_s = 5\n"
    )


def _until(what: str, done: Callable[[], bool], sync: SyncService) -> None:
    deadline = time.monotonic() + WAIT_S
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the demo waited {WAIT_S:.0f} s for {what}")
        sync.tick()
        time.sleep(0.05)


def _get(api: httpx.Client, path: str) -> Any:
    answer = api.get(path)
    answer.raise_for_status()
    return answer.json()


def _drained(runtime: Runtime, sync: SyncService) -> Callable[[], bool]:
    return lambda: runtime.store.acknowledged()[0] == runtime.store.chain.seq and not sync.busy


def act_cloud(workdir: Path) -> None:
    defaults = load_config(None, workdir / "cloud")
    config = dataclasses.replace(
        defaults,
        api=ApiSettings("127.0.0.1", 0),
        broker=dataclasses.replace(defaults.broker, plain_port=0),  # the demo's, loopback only
    )
    quiet = [logging.getLogger(name) for name in ("edge", "cloud", "uvicorn", "transitions")]
    levels = [log.level for log in quiet]
    for log in quiet:
        log.setLevel(logging.ERROR)  # the act prints what happens; the logs would drown it
    try:
        with contextlib.ExitStack() as stack:
            cloud = stack.enter_context(serve_in_thread(config))
            api = stack.enter_context(httpx.Client(base_url=cloud.url, timeout=10))
            kind = "external" if cloud.broker is None else type(cloud.broker).__name__
            print(f"cloud API {cloud.url} (OpenAPI at /docs), SQLite, broker {kind} "
                  f"(demo listener 127.0.0.1:{cloud.plain_port})")  # fmt: skip
            _log_in(cloud, api, OPERATOR, auth.Role.OPERATOR)
            finance = stack.enter_context(httpx.Client(base_url=cloud.url, timeout=10))
            _log_in(cloud, finance, FINANCE, auth.Role.FINANCE)
            _run_site(workdir, cloud, api, finance)
            verdict = _get(api, "/operator-log/verify")
            print(f"  operator log: {verdict['rows']} rows, hash chain "
                  f"{'intact' if verdict['ok'] else 'BROKEN: ' + verdict['problem']}")  # fmt: skip
    finally:
        for log, level in zip(quiet, levels, strict=True):
            log.setLevel(level)


def _log_in(cloud: RunningCloud, api: httpx.Client, name: str, role: auth.Role) -> None:
    """Make a demo user (as `voltbook-cloud user add` would) and log in as it."""
    password = secrets.token_urlsafe(16)
    with session_factory(cloud.engine).begin() as session:
        auth.create_user(session, name, role, password, display_name=f"Demo {role.value}",
                         now=dt.datetime.now(dt.UTC))  # fmt: skip
    answer = api.post("/auth/login", json={"user": name, "password": password})
    answer.raise_for_status()
    api.headers["Authorization"] = f"Bearer {answer.json()['token']}"
    print(f"{role.value} {name} logged in (POST /auth/login, a bearer token)")


def _run_site(workdir: Path, cloud: RunningCloud, api: httpx.Client, finance: httpx.Client) -> None:
    made = write_demo_site(workdir / "market", 30)
    with made.site_toml.open("a") as toml:
        toml.write(_cloud_section(cloud))
    site = load_site(made.site_toml)
    assert site.simulation is not None and site.simulation.start is not None
    node = site.settings.node
    public = (made.site_toml.parent / "node.pub").read_text().strip()
    api.post("/concentrators", json={"node": node, "public_key": public}).raise_for_status()
    print(
        f"concentrator {node} registered; {len(site.meters)} simulated meters, polls every {POLL}"
    )
    clock = ManualClock(site.simulation.start)
    booted = boot(site, clock=clock)
    runtime = booted.runtime
    cloud_settings = site.settings.cloud
    assert cloud_settings is not None  # the [cloud] section written above
    sync = SyncService(runtime, cloud_settings)
    sync.start()
    try:
        _until("the concentrator to connect", lambda: sync.link.connected, sync)
        owner = _until_cut_off(runtime, clock, sync)
        payment = _top_up(owner, runtime, clock, sync, api)
        desk = Desk(api, finance, runtime, clock, lambda what, done: _until(what, done, sync))
        run_operations(desk, owner, payment)
        _until("the ledger to be acknowledged", _drained(runtime, sync), sync)
        head = _get(api, f"/concentrators/{node}")
        same = head["head_seq"] == runtime.store.chain.seq
        same &= bytes.fromhex(head["head_hash"]) == runtime.store.chain.head
        print(f"  the cloud holds the concentrator's chain to seq {head['head_seq']}: "
              f"{'identical head hash' if same else 'HEADS DIFFER'}")  # fmt: skip
        if not same:
            raise RuntimeError("the cloud's copy of the chain differs from the concentrator's")
    finally:
        sync.stop(flush_s=2.0)
        booted.close()


def _until_cut_off(runtime: Runtime, clock: ManualClock, sync: SyncService) -> str:
    for _ in range(24 * 14 // 2):  # two weeks of polls at most
        report = runtime.run_cycle()
        sync.tick()
        dry = sorted(o for o, a in runtime.accounts.items() if a.arrears.tripped)
        if dry:
            print(f"  {report.now:%m-%d %H:%M} {dry[0]} is cut off for arrears (relay open)")
            return dry[0]
        clock.advance(POLL)
    raise RuntimeError("nobody ran out of credit in two simulated weeks")


def _top_up(
    owner: str, runtime: Runtime, clock: ManualClock, sync: SyncService, api: httpx.Client
) -> str:
    before = _get(api, f"/accounts/{owner}")
    made = api.post(
        "/recharges",
        json={"account": owner, "fen": TOP_UP_FEN, "method": "wechat"},
    )
    made.raise_for_status()
    recharge = made.json()
    print(f"  {OPERATOR}: POST /recharges {owner} {TOP_UP_FEN / 100:.2f} yuan (WeChat) → "
          f"{recharge['status']}, command {recharge['command_id'][:8]}…")  # fmt: skip
    command = f"/commands/{recharge['command_id']}"
    _until("the command to be applied", lambda: _get(api, command)["status"] == "applied", sync)
    print(f"  concentrator applied the signed command once; the cloud marks it "
          f"{_get(api, command)['status']}")  # fmt: skip
    clock.advance(POLL)
    report = runtime.run_cycle()
    closed = [o for o in report.outcomes if o.order.command is RelayCommand.CLOSE and o.confirmed]
    for outcome in closed:
        meter = outcome.order.meter
        print(f"  {report.now:%m-%d %H:%M} relay of meter {meter.address} (shop {meter.shop}) "
              "closed, confirmed by reading it back")  # fmt: skip
    if not closed:
        raise RuntimeError(f"{owner}'s relay did not close after the top-up")
    payment = f"/recharges/{recharge['payment']}"
    _until("the recharge to be posted", lambda: _get(api, payment)["status"] == "posted", sync)
    after = _get(api, f"/accounts/{owner}")
    print(f"  cloud: recharge {_get(api, payment)['status']}; {owner} prepaid "
          f"{before['prepaid_fen'] / 100:.2f} → {after['prepaid_fen'] / 100:.2f} yuan")  # fmt: skip
    return str(recharge["payment"])
