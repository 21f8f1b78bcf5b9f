"""A demo act: the cloud, the broker, a simulated concentrator and the payment providers'
sandbox; merchants pay on their phones and the relays the concentrator tripped for arrears close.

`act_cloud(workdir)` first starts the outside world on loopback (`demo.payments_act`): the
provider sandbox playing WeChat Pay and Alipay with keys of its own, and a WeChat Official
Account stand-in; it writes `cloud.toml` with the sandbox's `[payments]` snippet (the providers
notify the cloud at its own URL) and `[notices]` (the Official Account and an SMS file). Then it
starts the whole cloud in-process from that file (SQLite, mosquitto from PATH or the in-process
broker, and the broker's plain loopback listener for the demo, `[broker] plain_port`; real
concentrators use its TLS listener with a certificate), writes a 30-shop demo site whose
simulated days are today's and whose `[cloud]` section points at that listener, makes an
operator and a finance user and logs them in (`POST /auth/login`; every later request carries
a bearer token), registers the concentrator and the merchants of the tenants who start nearly
empty (an openid, a phone), and runs the real runtime with its real MQTT sync on a virtual
clock.

When three tenants are cut off for arrears: the first one's merchant logs in and pays by WeChat
Pay (h5), the second's by Alipay (wap): `POST /payments/orders`, the pay page opened and its
button pressed over HTTP as the phone would, the provider's signed notification reaching the
cloud, the order `credited` — each transition printed with its cause. The credit is a recharge:
the cloud books a pending transfer in its own chain and sends a signed command; the
concentrator applies it exactly once, closes the relay at its next poll (confirmed by
read-back) and uploads its ledger; the cloud posts the pending transfer when the concentrator's
entry arrives. Each merchant's notices (the cut-off, the recharge credited) are printed with
their delivery state (WeChat template message or SMS). The third tenant pays cash at the desk
(`POST /recharges`), which act 5 (`demo.operations_act`) corrects; act 6
(`demo.provision_act`) provisions and commissions a new concentrator; the act ends by checking
the concentrator's chain in the cloud and the operator log's hash chain.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from cloud.config import load_config
from cloud.db.engine import session_factory
from cloud.people import auth
from cloud.server import RunningCloud, serve_in_thread
from demo.operations_act import Desk, run_operations
from demo.payments_act import (
    PROVIDER_NAME,
    MerchantPerson,
    StandIns,
    pay_on_phone,
    register_merchants,
    show_notices,
    start_stand_ins,
    unfollow,
)
from demo.provision_act import act_provision
from demo.site import ZONE as SITE_ZONE
from demo.site import DemoSite, write_demo_site
from edge.rules.decisions import RelayCommand
from edge.runtime.boot import boot
from edge.runtime.clock import ManualClock
from edge.runtime.cycle import Runtime
from edge.site import load_site
from edge.sync.service import SyncService

POLL = dt.timedelta(hours=2)
TOP_UP_FEN = 20_000  # cash at the desk (act 5 corrects it as mistyped)
WECHAT_FEN = 10_000
ALIPAY_FEN = 5_000
WAIT_S = 20.0  # real seconds any one step may take before the act gives up
OPERATOR = "op-demo"
FINANCE = "fin-demo"
ADMIN = "admin-demo"
LIVE_S = 5.0  # `make demo`: real seconds between the live market's polls
ZONE = ZoneInfo(SITE_ZONE)
# The demo market's tenants run out in the night and are cut at 08:00 of its second day, when
# its friendly hours end (then 10:00 and 12:00, a cycle every 2 h). Starting the market at the
# midnight 31 h before now keeps all three within the cloud's last day of events (LOOKBACK)
# at any time of day, with an hour to spare; with 34 h, from 08:00 to 10:00 the first fell
# out of it and its merchant was never told of the cut-off (CI at 00:20 UTC failed so).
FIRST_CUT_OFF = dt.timedelta(hours=31)
CUT_OFF_TENANTS = 3  # one pays by WeChat Pay, one by Alipay, one cash at the desk
NEARLY_EMPTY_FEN = 1_000  # the tenants who start with less (`demo.site`: 3 yuan) run out


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


def act_cloud(workdir: Path, *, live: bool = False) -> None:
    """The acts; with `live`, then the console on the running cloud until Ctrl-C."""
    quiet = [logging.getLogger(name) for name in ("edge", "cloud", "uvicorn", "transitions")]
    levels = [log.level for log in quiet]
    for log in quiet:
        log.setLevel(logging.ERROR)  # the act prints what happens; the logs would drown it
    try:
        with contextlib.ExitStack() as stack:
            stand_ins = start_stand_ins(workdir / "cloud", stack)  # before the cloud: its config
            cloud = stack.enter_context(serve_in_thread(load_config(stand_ins.cloud_toml)))
            api = stack.enter_context(httpx.Client(base_url=cloud.url, timeout=10))
            kind = "external" if cloud.broker is None else type(cloud.broker).__name__
            print(f"cloud API {cloud.url} (OpenAPI at /docs), SQLite, broker {kind} "
                  f"(demo listener 127.0.0.1:{cloud.plain_port})")  # fmt: skip
            logins = {OPERATOR: _log_in(cloud, api, OPERATOR, auth.Role.OPERATOR)}
            finance = stack.enter_context(httpx.Client(base_url=cloud.url, timeout=10))
            logins[FINANCE] = _log_in(cloud, finance, FINANCE, auth.Role.FINANCE)
            admin = stack.enter_context(httpx.Client(base_url=cloud.url, timeout=10))
            logins[ADMIN] = _log_in(cloud, admin, ADMIN, auth.Role.ADMIN)
            _run_site(workdir, cloud, stand_ins, api, finance, logins if live else None)
            verdict = _get(api, "/operator-log/verify")
            print(f"  operator log: {verdict['rows']} rows, hash chain "
                  f"{'intact' if verdict['ok'] else 'BROKEN: ' + verdict['problem']}")  # fmt: skip
    finally:
        for log, level in zip(quiet, levels, strict=True):
            log.setLevel(level)


def _log_in(
    cloud: RunningCloud, api: httpx.Client, name: str, role: auth.Role, account: str | None = None
) -> str:
    """Make a demo user (as `voltbook-cloud user add` would) and log in as it; its password."""
    password = secrets.token_urlsafe(16)
    with session_factory(cloud.engine).begin() as session:
        auth.create_user(session, name, role, password, account=account,
                         display_name=f"Demo {role.value}",
                         now=dt.datetime.now(dt.UTC))  # fmt: skip
    answer = api.post("/auth/login", json={"user": name, "password": password})
    answer.raise_for_status()
    api.headers["Authorization"] = f"Bearer {answer.json()['token']}"
    of = "" if account is None else f" of {account}"
    print(f"{'  ' if account else ''}{role.value} {name}{of} logged in "
          "(POST /auth/login, a bearer token)")  # fmt: skip
    return password


def _start_near_now(now: dt.datetime | None = None) -> dt.datetime:
    """The midnight the market starts at: its days are today's, because the cloud tells
    merchants of events from the last day only (`cloud.notices.sources.LOOKBACK`); its
    cut-offs (08:00-12:00 of its second day) then fall within the last day (`FIRST_CUT_OFF`)."""
    day = ((now or dt.datetime.now(ZONE)).astimezone(ZONE) - FIRST_CUT_OFF).date()
    return dt.datetime.combine(day, dt.time(0), tzinfo=ZONE)


def _merchants(made: DemoSite) -> list[MerchantPerson]:
    """The merchants of the tenants who start nearly empty (they will be cut off), each with a
    phone and the openid by which they follow the Official Account."""
    seeds = json.loads((made.directory / "seed.json").read_text(encoding="utf-8"))["recharges"]
    poor = [s["account"] for s in seeds if s["fen"] < NEARLY_EMPTY_FEN]
    return [MerchantPerson(a, f"商户{a}", f"1380000{a[1:]}", f"oDemo{a}") for a in poor]


def _run_site(  # noqa: PLR0917 (the act's cast)
    workdir: Path, cloud: RunningCloud, stand_ins: StandIns, api: httpx.Client,
    finance: httpx.Client, logins: dict[str, str] | None,
) -> None:  # fmt: skip
    made = write_demo_site(workdir / "market", 30, start=_start_near_now())
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
    site_now = Site(runtime, clock, sync, api)
    try:
        _until("the concentrator to connect", lambda: sync.link.connected, sync)
        # The registry names the merchants once the concentrator's inventory made the accounts
        # its own (an account the registry declares in no shop could not be claimed).
        known = lambda: _get(api, "/accounts")["total"] == len(made.accounts)  # noqa: E731
        _until("the cloud to know the concentrator's accounts", known, sync)
        people = {p.account: p for p in _merchants(made)}
        register_merchants(api, list(people.values()))
        wechat_owner, alipay_owner, desk_owner = _until_cut_off(runtime, clock, sync)[:3]
        _until("the ledger to be acknowledged", _drained(runtime, sync), sync)
        print("\nact 4 — merchants pay on their phones; the relays close")
        for owner, provider, channel, fen in (
            (wechat_owner, "wechat", "h5", WECHAT_FEN),
            (alipay_owner, "alipay", "wap", ALIPAY_FEN),
        ):
            person = people.get(owner)
            if provider == "alipay" and person is not None:
                unfollow(stand_ins, person)  # so that the fallback to SMS is seen too
            how = (provider, channel, fen)
            _pay_online(cloud, site_now, stand_ins, person, owner=owner, how=how)
        payment = _top_up(desk_owner, site_now)
        desk = Desk(api, finance, runtime, clock, lambda what, done: _until(what, done, sync))
        run_operations(desk, desk_owner, payment)
        _until("the ledger to be acknowledged", _drained(runtime, sync), sync)
        head = _get(api, f"/concentrators/{node}")
        same = head["head_seq"] == runtime.store.chain.seq
        same &= bytes.fromhex(head["head_hash"]) == runtime.store.chain.head
        print(f"  the cloud holds the concentrator's chain to seq {head['head_seq']}: "
              f"{'identical head hash' if same else 'HEADS DIFFER'}")  # fmt: skip
        if not same:
            raise RuntimeError("the cloud's copy of the chain differs from the concentrator's")
        act_provision(workdir, cloud, api)
        if logins is not None:
            _register_tree(api)
            _stay_live(cloud, site_now, logins)
    finally:
        sync.stop(flush_s=2.0)
        booted.close()


def _register_tree(api: httpx.Client) -> None:
    """The market's buildings, floors and shops in the registry, as the concentrator's inventory
    names them, for the console's tree (the shops name no concentrator: nothing is pushed)."""
    accounts = _get(api, "/accounts?limit=1000")["items"]
    site = _get_posted(api, "/registry/sites", {"name": "示范市场"})
    floors: dict[tuple[str, str], int] = {}
    buildings: dict[str, int] = {}
    for account in sorted(accounts, key=lambda a: (a["building"], a["floor"], a["shop"])):
        building, floor = account["building"], account["floor"]
        if building not in buildings:
            body = {"site_id": site, "name": building}
            buildings[building] = _get_posted(api, "/registry/buildings", body)
        if (building, floor) not in floors:
            body = {"building_id": buildings[building], "name": floor}
            floors[building, floor] = _get_posted(api, "/registry/floors", body)
        body = {"floor_id": floors[building, floor], "number": account["shop"]}
        _get_posted(api, "/registry/shops", body)
    print(f"  registry: site 示范市场, {len(buildings)} buildings, {len(floors)} floors, "
          f"{len(accounts)} shops (POST /registry/…), for the console's tree")  # fmt: skip


def _get_posted(api: httpx.Client, path: str, body: dict[str, Any]) -> int:
    answer = api.post(path, json=body)
    answer.raise_for_status()
    return int(answer.json()["id"])


def _stay_live(cloud: RunningCloud, site: Site, logins: dict[str, str]) -> None:
    """Keep the market running on the wall clock, its readings flowing into the console, until
    Ctrl-C: a poll every LIVE_S seconds, the virtual clock moved on by the real time elapsed."""
    print(f"\n== The console, live: {cloud.url}/console/  (the merchants' phone page: "
          f"{cloud.url}/m/, the API's: {cloud.url}/docs)")  # fmt: skip
    for name, password in logins.items():
        print(f"   log in as {name:<9} password {password}")
    print("   the market keeps running; Ctrl-C ends the demo", flush=True)
    last = time.monotonic()
    try:
        while True:
            time.sleep(LIVE_S)
            now = time.monotonic()
            site.clock.advance(dt.timedelta(seconds=now - last))
            last = now
            site.runtime.run_cycle()
            site.sync.tick()
    except KeyboardInterrupt:
        print("\n   the demo ends")


@dataclass(frozen=True, slots=True)
class Site:
    """The running concentrator, its virtual clock and sync, and the operator's client."""

    runtime: Runtime
    clock: ManualClock
    sync: SyncService
    api: httpx.Client

    def wait(self, what: str, done: Callable[[], bool]) -> None:
        _until(what, done, self.sync)


def _until_cut_off(runtime: Runtime, clock: ManualClock, sync: SyncService) -> list[str]:
    """Poll until at least `CUT_OFF_TENANTS` tenants are cut off for arrears; who they are."""
    for _ in range(24 * 14 // 2):  # two weeks of polls at most
        report = runtime.run_cycle()
        sync.tick()
        dry = sorted(o for o, a in runtime.accounts.items() if a.arrears.tripped)
        if len(dry) >= CUT_OFF_TENANTS:
            for owner in dry:
                print(f"  {report.now:%m-%d %H:%M} {owner} is cut off for arrears (relay open)")
            return dry
        clock.advance(POLL)
    raise RuntimeError(f"{CUT_OFF_TENANTS} tenants did not run out of credit in two weeks")


def _pay_online(
    cloud: RunningCloud, site: Site, stand_ins: StandIns, person: MerchantPerson | None,
    *, owner: str, how: tuple[str, str, int],
) -> None:  # fmt: skip
    provider, channel, fen = how
    print(f"  — {owner}'s merchant pays with {PROVIDER_NAME[provider]} ({channel}) on the phone")
    with httpx.Client(base_url=cloud.url, timeout=10) as merchant:
        _log_in(cloud, merchant, f"m-{owner}", auth.Role.MERCHANT, account=owner)
        before = _get(merchant, f"/accounts/{owner}")
        recharge = pay_on_phone(merchant, account=owner, provider=provider, channel=channel,
                                fen=fen, wait=site.wait)  # fmt: skip
        _relay_closes(owner, recharge, site)
        after = _get(merchant, f"/accounts/{owner}")
        print(f"  cloud: recharge {recharge['payment']} posted; {owner} prepaid "
              f"{before['prepaid_fen'] / 100:.2f} → {after['prepaid_fen'] / 100:.2f} yuan "
              f"({PROVIDER_NAME[provider]} credited)")  # fmt: skip
        if person is not None:
            show_notices(merchant, person, stand_ins, site.wait)


def _relay_closes(owner: str, recharge: dict[str, Any], site: Site) -> None:
    """The recharge's command applied at the concentrator, the owner's relay closed at the next
    poll (confirmed by read-back), the recharge posted when the concentrator's entry arrives."""
    api, runtime = site.api, site.runtime
    command = f"/commands/{recharge['command_id']}"
    site.wait("the command to be applied", lambda: _get(api, command)["status"] == "applied")
    print(f"  concentrator applied the signed command once; the cloud marks it "
          f"{_get(api, command)['status']}")  # fmt: skip
    site.clock.advance(POLL)
    report = runtime.run_cycle()
    closed = [o for o in report.outcomes if o.order.command is RelayCommand.CLOSE and o.confirmed
              and o.order.meter.account == owner]  # fmt: skip
    for outcome in closed:
        meter = outcome.order.meter
        print(f"  {report.now:%m-%d %H:%M} relay of meter {meter.address} (shop {meter.shop}) "
              "closed, confirmed by reading it back")  # fmt: skip
    if not closed:
        raise RuntimeError(f"{owner}'s relay did not close after the top-up")
    payment = f"/recharges/{recharge['payment']}"
    site.wait("the recharge to be posted", lambda: _get(api, payment)["status"] == "posted")


def _top_up(owner: str, site: Site) -> str:
    """The operator tops `owner` up at the desk (cash, `POST /recharges`); the payment id."""
    api = site.api
    print(f"  — {owner}'s merchant pays cash at the desk")
    before = _get(api, f"/accounts/{owner}")
    made = api.post("/recharges", json={"account": owner, "fen": TOP_UP_FEN, "method": "cash"})
    made.raise_for_status()
    recharge = made.json()
    print(f"  {OPERATOR}: POST /recharges {owner} {TOP_UP_FEN / 100:.2f} yuan (cash) → "
          f"{recharge['status']}, command {recharge['command_id'][:8]}…")  # fmt: skip
    _relay_closes(owner, recharge, site)
    payment = f"/recharges/{recharge['payment']}"
    after = _get(api, f"/accounts/{owner}")
    print(f"  cloud: recharge {_get(api, payment)['status']}; {owner} prepaid "
          f"{before['prepaid_fen'] / 100:.2f} → {after['prepaid_fen'] / 100:.2f} yuan")  # fmt: skip
    return str(recharge["payment"])
