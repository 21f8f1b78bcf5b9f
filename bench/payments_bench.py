"""Online payments under load: WeChat Pay notifications verified, checked and credited exactly
once (`cloud.payments.notices`), first one at a time against the bare cryptography, then many
at once over real HTTP against the cloud served by uvicorn on PostgreSQL.

1. Floor and ours, one thread, the same signed notices, in the same run:
   - floor: `cryptography` alone, RSA-2048 PKCS#1 v1.5 SHA-256 verify of
     `timestamp\\nnonce\\nbody\\n` and AES-256-GCM decrypt of the resource (its fields taken
     out of the JSON beforehand; base64 decoding included);
   - scheme: our verification as `wechat_notice` runs it, without the database
     (`verify_signed`, `json_body`, `decrypt_resource`, `gateways.wechat_trade`);
   - notice, credit: `notices.wechat_notice` on PostgreSQL, the first notice of each order
     (verify, decrypt, check the order, the recharge and its command, committed);
   - notice, duplicate: the same notices again (verify, decrypt, check, record, committed).
   Each prints notices/s and its ratio to the floor (goal >= 0.5).
2. Load: `--notices` (10 000; smoke 200) notices, 60 % first notices of as many orders, 30 %
   duplicates of them (re-signed with a fresh nonce and timestamp, as WeChat Pay retries) and
   10 % forgeries (a foreign key under our platform serial, a real signature over another
   body, an unknown serial), each forgery at an order that is never paid, shuffled, sent by
   `--senders` (16) threads of a second process over keep-alive HTTP/1.1 to
   `POST /payments/wechat/notify` of `cloud.app.create_app` under uvicorn in this process.
   Every answer must be what the notice deserves (204, or 401 for a forgery); afterwards every
   paid order is `credited` with exactly one recharge of its amount, no forged order has a
   recharge or left `created`, and `payment_notices` holds one verdict per notice. Prints
   p50/p99 answer time (goal p99 <= 200 ms; the providers wait 5 s) and notices/s.

The orders are inserted as `orders.create` leaves them once the provider answered (a
`created` row and its `created` transition; `pay` empty: no phone reads it) rather than opened
at the provider sandbox: 6 000 round trips to it would measure the sandbox. The accounts
belong to `--nodes` registered concentrators (recharges of one node's accounts are serialised
by its row lock, as in production).

A wrong answer (a valid notice refused, a forgery taken, a double or missing credit) fails
the bench; a missed goal is printed, never fails it.

    .venv/bin/python bench/payments_bench.py [--smoke] [--notices 10000] [--senders 16]
                                             [--database-url postgresql://…]
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import http.client
import json
import multiprocessing
import random
import secrets
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from cloud.app import create_app
from cloud.config import load_config
from cloud.db.engine import make_engine, session_factory, upgrade
from cloud.db.models import Concentrator, Recharge, ReportedAccount
from cloud.db.payments import PaymentNotice, PaymentOrder, PaymentTransition
from cloud.ingest import concentrators
from cloud.payments import gateways, notices, wechat_scheme
from cloud.payments.providers import Providers
from cloud.payments.sandbox.keys import SandboxKeys, new_key
from cloud.payments.states import ORDER, OrderState
from cloud.server import listen
from ledger.chain import NodeKey

try:
    from bench import report_data
except ModuleNotFoundError:  # run as `python bench/payments_bench.py`: bench/ is sys.path[0]
    import report_data  # type: ignore[no-redef]

GOAL_RATIO = 0.5
GOAL_P99_MS = 200.0
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
FORGERIES = ("foreign_key", "swapped_body", "unknown_serial")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- notices as WeChat Pay sends them -----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Wire:
    """One POST: body, headers, and the status it deserves."""

    body: bytes
    headers: dict[str, str]
    expect: int
    kind: str  # first, duplicate, forged
    out_trade_no: str


class Signer:
    def __init__(self, keys: SandboxKeys) -> None:
        self.keys = keys
        self.serial, self.key = keys.signing_platform
        self.foreign = new_key()  # an attacker's

    def body(self, out_trade_no: str, fen: int) -> bytes:
        content = {
            "appid": self.keys.appid, "mchid": self.keys.mchid, "out_trade_no": out_trade_no,
            "transaction_id": f"4200{secrets.randbelow(10**24):024d}", "trade_type": "NATIVE",
            "trade_state": "SUCCESS", "trade_state_desc": "支付成功", "bank_type": "OTHERS",
            "success_time": utc_now().astimezone(SHANGHAI).isoformat(timespec="seconds"),
            "payer": {"openid": "o-bench"},
            "amount": {"total": fen, "payer_total": fen, "currency": "CNY",
                       "payer_currency": "CNY"},
        }  # fmt: skip
        resource = wechat_scheme.encrypt_resource(
            self.keys.apiv3_key, json.dumps(content, ensure_ascii=False).encode(),
            nonce=secrets.token_hex(6), associated_data="transaction",
            original_type="transaction",
        )  # fmt: skip
        return json.dumps({
            "id": secrets.token_hex(16), "create_time": utc_now().isoformat(timespec="seconds"),
            "resource_type": "encrypt-resource", "event_type": "TRANSACTION.SUCCESS",
            "summary": "支付成功", "resource": resource,
        }, ensure_ascii=False).encode()  # fmt: skip

    def headers(self, body: bytes, *, key: rsa.RSAPrivateKey | None = None,
                serial: str | None = None) -> dict[str, str]:  # fmt: skip
        signed = wechat_scheme.signed_headers(
            key or self.key, serial or self.serial, body, timestamp=int(time.time()),
            nonce=secrets.token_hex(16),
        )  # fmt: skip
        return {**signed, "Content-Type": "application/json"}

    def forged(self, kind: str, out_trade_no: str, fen: int) -> Wire:
        body = self.body(out_trade_no, fen)
        if kind == "foreign_key":
            headers = self.headers(body, key=self.foreign)
        elif kind == "swapped_body":  # a real signature, over another (real) body
            headers = self.headers(self.body(out_trade_no, fen + 1))
        else:
            headers = self.headers(body, key=self.foreign, serial="PUB_KEY_ID_0000000000000001")
        return Wire(body, headers, 401, "forged", out_trade_no)


# -- the database -------------------------------------------------------------------------------
def prepare(engine: Engine, nodes: int, accounts: int) -> list[str]:
    """Registered concentrators and their accounts; the account names."""
    now = utc_now()
    names = [f"P{n:05d}" for n in range(accounts)]
    with session_factory(engine).begin() as session:
        for n in range(nodes):
            node = f"edge-{9001 + n:04d}"  # clear of `bench.report_data`'s (a reused database)
            if session.get(Concentrator, node) is None:
                concentrators.register(session, node, NodeKey.generate().public_key, name=node,
                                       now=now)  # fmt: skip
        session.add_all(
            ReportedAccount(account=a, node=f"edge-{9001 + i % nodes:04d}", shop=a)
            for i, a in enumerate(names)
            if session.get(ReportedAccount, a) is None
        )
    return names


def insert_orders(
    engine: Engine, prefix: str, count: int, accounts: list[str]
) -> list[tuple[str, int]]:
    """`count` wechat orders as `orders.create` leaves them (state created, its transition)."""
    now = utc_now()
    made = [(f"{prefix}{i:08d}", 100 + i % 50_000) for i in range(count)]
    with session_factory(engine).begin() as session:
        for i, (no, fen) in enumerate(made):
            session.add(PaymentOrder(
                out_trade_no=no, account=accounts[i % len(accounts)], fen=fen, provider="wechat",
                channel="native", state=ORDER.start(OrderState.CREATED), created_by="bench",
                payer=None, pay={}, transaction_id=None, paid_fen=None, refunded_fen=0,
                created=now, expires=now + dt.timedelta(hours=2), paid_at=None,
                credited_at=None, closed_at=None,
            ))  # fmt: skip
            session.add(PaymentTransition(out_trade_no=no, at=now, from_state=None,
                                          to_state=OrderState.CREATED.value, cause="created",
                                          facts={"by": "bench", "channel": "native"}))  # fmt: skip
    return made


def load_providers(keys: SandboxKeys, directory: Path) -> Providers:
    # The provider's API is never called here (notices only), so api_base points nowhere.
    snippet = keys.write(directory / "pay", api_base="http://127.0.0.1:9",
                         notify_base="http://127.0.0.1:9")  # fmt: skip
    config = load_config(snippet, directory / "data")
    assert config.payments is not None
    return Providers.load(config.payments, utc_now)


# -- 1. floor and ours, one thread --------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Bare:
    """What the floor is handed: the signed message and the resource's fields."""

    public: rsa.RSAPublicKey
    signature: str
    message: bytes
    nonce: bytes
    ciphertext: str
    associated: bytes


def bare(wire: Wire, public: rsa.RSAPublicKey) -> Bare:
    resource = json.loads(wire.body)["resource"]
    h = wire.headers
    message = wechat_scheme.notification_message(h["Wechatpay-Timestamp"], h["Wechatpay-Nonce"],
                                                 wire.body)  # fmt: skip
    return Bare(public, h["Wechatpay-Signature"], message, resource["nonce"].encode(),
                resource["ciphertext"], resource["associated_data"].encode())  # fmt: skip


def floor_one(item: Bare, aes: AESGCM) -> bytes:
    item.public.verify(base64.b64decode(item.signature), item.message, padding.PKCS1v15(),
                       hashes.SHA256())  # fmt: skip
    return aes.decrypt(item.nonce, base64.b64decode(item.ciphertext), item.associated)


def rate(label: str, count: int, seconds: float, floor: float | None) -> float:
    per_s = count / seconds
    line = f"  {label:<58} {per_s:9.0f} notices/s  {seconds / count * 1e6:8.0f} µs each"
    if floor is not None:
        ratio = per_s / floor
        verdict = "ok" if ratio >= GOAL_RATIO else "MISSED"
        line += f"   ratio {ratio:5.3f} (goal >= {GOAL_RATIO}): {verdict}"
    print(line, flush=True)
    return per_s


def single_thread(engine: Engine, providers: Providers, signer: Signer, *, accounts: list[str],
                  count: int, key: NodeKey) -> None:  # fmt: skip
    orders = insert_orders(engine, "VBSINGLE", count, accounts)
    wires = [Wire(b, signer.headers(b), 204, "first", no)
             for no, fen in orders for b in [signer.body(no, fen)]]  # fmt: skip
    public = signer.key.public_key()
    items = [bare(w, public) for w in wires]
    aes = AESGCM(signer.keys.apiv3_key)
    client = providers.wechat
    assert client is not None
    platform_keys, apiv3 = client.platform_keys, client.apiv3_key

    # correctness first: the floor decrypts what was sealed, refuses a forgery; ours too
    for item, wire in zip(items[:3], wires, strict=False):
        plain = json.loads(floor_one(item, aes))
        assert plain["out_trade_no"] == wire.out_trade_no
    forged = bare(signer.forged("foreign_key", "VBNOSUCH", 1), public)
    try:
        floor_one(forged, aes)
    except InvalidSignature:
        pass
    else:
        raise SystemExit("WRONG: the floor took a forgery")

    def scheme_one(wire: Wire) -> gateways.Trade:
        wechat_scheme.verify_signed(wire.headers, wire.body, platform_keys, int(time.time()))
        envelope = wechat_scheme.json_body(wire.body)
        return gateways.wechat_trade(wechat_scheme.decrypt_resource(apiv3, envelope["resource"]))

    for wire in wires[:3]:
        assert scheme_one(wire).out_trade_no == wire.out_trade_no

    def timed(run: Callable[[], object]) -> float:
        began = time.perf_counter()
        run()
        return time.perf_counter() - began

    # The in-memory sides are fast: every notice `rounds` times, in turns of one pass each so
    # a load that comes and goes on the machine hits both; the best pass of each counts.
    rounds = max(5, 2000 // count)
    floor_s = scheme_s = float("inf")
    for _ in range(rounds):
        floor_s = min(floor_s, timed(lambda: [floor_one(i, aes) for i in items]))
        scheme_s = min(scheme_s, timed(lambda: [scheme_one(w) for w in wires]))
    sessions = session_factory(engine)
    verdicts: Counter[str] = Counter()

    def through_notice() -> None:
        for wire in wires:
            with sessions() as session:
                answer = notices.wechat_notice(session, providers, headers=wire.headers,
                                               body=wire.body, address="127.0.0.1", key=key,
                                               now=utc_now())  # fmt: skip
                verdicts[answer.verdict] += 1

    credit_s = timed(through_notice)
    if verdicts != Counter({notices.ACCEPTED: count}):
        raise SystemExit(f"WRONG: first notices answered {dict(verdicts)}")
    verdicts.clear()
    duplicate_s = timed(through_notice)
    if verdicts != Counter({notices.DUPLICATE: count}):
        raise SystemExit(f"WRONG: duplicates answered {dict(verdicts)}")
    with sessions() as session:
        credited = _recharges(session, [no for no, _ in orders])
    if credited != {no: fen for no, fen in orders}:
        raise SystemExit("WRONG: the single-thread orders were not each credited once")

    print(f"\n1. one thread, {count} notices (the in-memory sides: the best of {rounds} passes):")
    floor = rate("floor: cryptography RSA-2048 verify + AES-256-GCM decrypt", count, floor_s,
                 None)  # fmt: skip
    rate("scheme: verify_signed + json_body + decrypt + wechat_trade", count, scheme_s,
         floor)  # fmt: skip
    rate("wechat_notice on PostgreSQL, duplicate (check, record)", count, duplicate_s, floor)
    rate("wechat_notice on PostgreSQL, first (+ recharge, command)", count, credit_s, floor)


def _recharges(session: Session, numbers: list[str]) -> dict[str, int]:
    """payment → fen of the recharges of `numbers`; SystemExit on a second one of any."""
    found: dict[str, int] = {}
    for start in range(0, len(numbers), 1000):
        chunk = numbers[start : start + 1000]
        for payment, fen in session.execute(
            select(Recharge.payment, Recharge.fen).where(Recharge.payment.in_(chunk))
        ):
            if payment in found:
                raise SystemExit(f"WRONG: order {payment} was credited twice")
            found[payment] = fen
    return found


# -- 2. under load, over HTTP -------------------------------------------------------------------
Sample = tuple[int, float, int, bytes]  # index, latency (s), status, body


def sender(base: str, wires: list[tuple[bytes, dict[str, str]]], next_index: Callable[[], int],
           out: list[Sample]) -> None:  # fmt: skip
    where = urlsplit(base)
    connection = http.client.HTTPConnection(where.hostname or "", where.port, timeout=60)
    while (i := next_index()) < len(wires):
        body, headers = wires[i]
        began = time.perf_counter()
        try:
            connection.request("POST", "/payments/wechat/notify", body, headers)
            answer = connection.getresponse()
            content, status = answer.read(), answer.status
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            connection = http.client.HTTPConnection(where.hostname or "", where.port, timeout=60)
            content, status = repr(exc).encode(), 0
        out.append((i, time.perf_counter() - began, status, content))
    connection.close()


def probe(base: str, done: threading.Event, out: list[float]) -> None:
    """Every 10 ms a request the event loop answers alone (an unknown path: 404, no thread,
    no database): slow answers here mean something blocks the loop."""
    where = urlsplit(base)
    connection = http.client.HTTPConnection(where.hostname or "", where.port, timeout=60)
    while not done.wait(0.01):
        began = time.perf_counter()
        connection.request("GET", "/bench-loop-probe")
        answer = connection.getresponse()
        answer.read()
        if answer.status != 404:
            raise SystemExit(f"the loop probe answered {answer.status}")
        out.append(time.perf_counter() - began)
    connection.close()


def drive(base: str, wires: list[tuple[bytes, dict[str, str]]], senders: int, results: Any) -> None:
    """The load process: `senders` threads, each sending the next notice when answered, and
    the loop probe."""
    lock, counter = threading.Lock(), iter(range(len(wires) + senders))

    def next_index() -> int:
        with lock:
            return next(counter)

    per: list[list[Sample]] = [[] for _ in range(senders)]
    probed: list[float] = []
    done = threading.Event()
    prober = threading.Thread(target=probe, args=(base, done, probed))
    began = time.perf_counter()
    threads = [threading.Thread(target=sender, args=(base, wires, next_index, per[n]))
               for n in range(senders)]  # fmt: skip
    prober.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    prober.join()
    results.send((time.perf_counter() - began, [s for p in per for s in p], probed))
    results.close()


def build_load(signer: Signer, engine: Engine, accounts: list[str], total: int,
               prefix: str) -> tuple[list[Wire], list[tuple[str, int]], list[str]]:  # fmt: skip
    """Shuffled wires; the orders to be paid (number, fen); the orders only forged at."""
    forged_n, duplicate_n = total // 10, total * 3 // 10
    first_n = total - forged_n - duplicate_n
    made = insert_orders(engine, prefix, first_n + forged_n, accounts)
    paid, bait = made[:first_n], made[first_n:]
    rng = random.Random(14)
    wires: list[Wire] = []
    bodies: dict[str, bytes] = {}
    for no, fen in paid:
        bodies[no] = signer.body(no, fen)
        wires.append(Wire(bodies[no], signer.headers(bodies[no]), 204, "first", no))
    for _ in range(duplicate_n):  # a retry: the same notice, signed anew
        no, _fen = rng.choice(paid)
        wires.append(Wire(bodies[no], signer.headers(bodies[no]), 204, "duplicate", no))
    for i, (no, fen) in enumerate(bait):
        wires.append(signer.forged(FORGERIES[i % len(FORGERIES)], no, fen))
    rng.shuffle(wires)
    return wires, paid, [no for no, _ in bait]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def serve(app: Any) -> tuple[uvicorn.Server, threading.Thread, str]:
    listener = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False,
                                           lifespan="off"))  # fmt: skip
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise SystemExit("the cloud did not start")
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{listener.getsockname()[1]}"


def under_load(engine: Engine, providers: Providers, signer: Signer, *, accounts: list[str],
               total: int, senders: int, key: NodeKey, prefix: str) -> None:  # fmt: skip
    began = time.monotonic()
    wires, paid, bait = build_load(signer, engine, accounts, total, prefix)
    kinds = Counter(w.kind for w in wires)
    print(f"\n2. {total} notices over HTTP, {senders} senders (a second process, keep-alive): "
          f"{kinds['first']} first, {kinds['duplicate']} duplicates, {kinds['forged']} forged "
          f"({', '.join(FORGERIES)}); {len(paid) + len(bait)} orders inserted, notices signed "
          f"in {time.monotonic() - began:.1f} s", flush=True)  # fmt: skip
    app = create_app(engine, key, providers=providers)
    server, thread, base = serve(app)
    try:
        context = multiprocessing.get_context("spawn")
        receiver, results = context.Pipe(duplex=False)
        load = context.Process(target=drive, args=(base, [(w.body, w.headers) for w in wires],
                                                   senders, results))  # fmt: skip
        load.start()
        results.close()
        elapsed, samples, probed = receiver.recv()
        load.join()
    finally:
        server.should_exit = True
        thread.join(10)

    wrong = [(wires[i].kind, wires[i].out_trade_no, status, content[:120])
             for i, _, status, content in samples if status != wires[i].expect]  # fmt: skip
    if len(samples) != len(wires) or wrong:
        raise SystemExit(f"WRONG: {len(wrong)} answers not as deserved, e.g. {wrong[:5]}")
    check_books(engine, paid, bait, kinds, prefix)

    ms = [s[1] * 1000 for s in samples]
    p99 = percentile(ms, 0.99)
    verdict = "ok" if p99 <= GOAL_P99_MS else "MISSED"
    print("  every answer as deserved; every paid order credited once, 0 forged credited")
    print(f"  {len(samples) / elapsed:7.1f} notices/s over {elapsed:.1f} s   p50 "
          f"{percentile(ms, 0.5):6.1f}  p95 {percentile(ms, 0.95):6.1f}  p99 {p99:6.1f}  max "
          f"{max(ms):6.1f} ms   p99 goal <= {GOAL_P99_MS:.0f} ms: {verdict}")  # fmt: skip
    loop_ms = [p * 1000 for p in probed]
    print(f"    loop probe (404 on the event loop alone, every 10 ms, {len(loop_ms)} answers) "
          f"p50 {percentile(loop_ms, 0.5):6.1f}  p99 {percentile(loop_ms, 0.99):6.1f}  max "
          f"{max(loop_ms):6.1f} ms")  # fmt: skip
    for kind in ("first", "duplicate", "forged"):
        chosen = [s[1] * 1000 for s in samples if wires[s[0]].kind == kind]
        print(f"    {kind:<10} p50 {percentile(chosen, 0.5):6.1f}  p99 "
              f"{percentile(chosen, 0.99):6.1f} ms")  # fmt: skip


def check_books(engine: Engine, paid: list[tuple[str, int]], bait: list[str],
                kinds: Counter[str], prefix: str) -> None:  # fmt: skip
    with session_factory(engine)() as session:
        credited = _recharges(session, [no for no, _ in paid] + bait)
        if credited != dict(paid):
            missing = [no for no, _ in paid if no not in credited][:5]
            forged = [no for no in bait if no in credited][:5]
            raise SystemExit(f"WRONG: not credited {missing}, forged credited {forged}")
        numbers = [no for no, _ in paid]
        states: Counter[str] = Counter()
        for start in range(0, len(numbers) + len(bait), 1000):
            chunk = (numbers + bait)[start : start + 1000]
            found = session.execute(
                select(PaymentOrder.out_trade_no, PaymentOrder.state, PaymentOrder.paid_fen)
                .where(PaymentOrder.out_trade_no.in_(chunk))
            )  # fmt: skip
            for no, state, paid_fen in found:
                want = OrderState.CREDITED if no in credited else OrderState.CREATED
                if state != want or (paid_fen or 0) != credited.get(no, 0):
                    raise SystemExit(f"WRONG: order {no} is {state} (paid {paid_fen})")
                states[state] += 1
        verdicts = dict(session.execute(
            select(PaymentNotice.verdict, func.count())
            .where(PaymentNotice.out_trade_no.like(f"{prefix}%")
                   | PaymentNotice.out_trade_no.is_(None))
            .group_by(PaymentNotice.verdict)
        ).all())  # fmt: skip
    wanted = {notices.ACCEPTED: kinds["first"], notices.DUPLICATE: kinds["duplicate"],
              notices.REFUSED: kinds["forged"]}  # fmt: skip
    if verdicts != wanted:
        raise SystemExit(f"WRONG: payment_notices holds {verdicts}, not {wanted}")
    print(f"  orders: {dict(states)}; payment_notices: {verdicts}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few hundred notices, for CI")
    parser.add_argument("--notices", type=int, help="under load (default 10 000; smoke 200)")
    parser.add_argument("--senders", type=int, default=16, help="concurrent senders (16)")
    parser.add_argument("--nodes", type=int, default=20, help="concentrators (20)")
    report_data.add_database_argument(parser)
    args = parser.parse_args()
    total = args.notices or (200 if args.smoke else 10_000)
    single = 20 if args.smoke else 500
    began = time.monotonic()
    keys = SandboxKeys()
    signer = Signer(keys)
    key = NodeKey.generate()
    print(f"payments bench ({'smoke' if args.smoke else 'full'}): WeChat Pay notifications, "
          f"RSA-2048 keys made for the run")  # fmt: skip
    with report_data.open_database(args.database_url) as db, \
            tempfile.TemporaryDirectory() as workdir:  # fmt: skip
        print(f"database: {db.note}", flush=True)
        engine = make_engine(db.url)
        providers = load_providers(keys, Path(workdir))
        try:
            upgrade(engine)
            accounts = prepare(engine, args.nodes, args.nodes * 25)
            print(f"{args.nodes} concentrators, {len(accounts)} accounts", flush=True)
            single_thread(engine, providers, signer, accounts=accounts, count=single, key=key)
            prefix = f"VBLOAD{secrets.token_hex(2).upper()}"
            under_load(engine, providers, signer, accounts=accounts, total=total,
                       senders=args.senders, key=key, prefix=prefix)  # fmt: skip
        finally:
            providers.close()
            engine.dispose()
    print(f"\ndone in {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
