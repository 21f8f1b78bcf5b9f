"""API latency under concurrent load: paged GETs from a second process against the API served
by uvicorn over the generated PostgreSQL (`bench.report_data`, the same data as
`bench/report_bench.py`).

The API is `cloud.app.create_app` under one uvicorn server on a free 127.0.0.1 port, in a
thread of this process, as `voltbook-cloud` runs it (sync endpoints on FastAPI's thread pool).
With `--workers N` the same load is then run a second time against `voltbook-cloud serve` itself
in a separate process, configured with `[api] workers = N` (N processes answering on one port,
`cloud.server`; the embedded broker and the ingest worker idle), and both results are printed.
A bench admin logs in (`POST /auth/login`); then a second process (multiprocessing, spawn)
runs `--clients` client threads, each with its own keep-alive HTTP/1.1 connection
(`http.client`) and the bearer token, each sending its next request as soon as the previous
answer is read (closed loop), for `--seconds` after a warm-up that is not counted. Requests
are drawn (fixed seed) from a mix of paged reads an operator's console makes:

| kind                | request                                                              |
|---------------------|----------------------------------------------------------------------|
| deposits            | /reports/deposits, the month, one building, a page of 50, random offset |
| consumption/building| /reports/consumption group=shop, the month, one building, a page of 50 |
| consumption/all     | /reports/consumption group=shop, the month, all shops, a page of 50   |
| accounts            | /accounts, a page of 50 at a random offset (balances, meters)         |
| ledger              | /ledger, 100 entries after a random id (keyset)                       |
| readings            | /readings of one meter over one day (96 rows)                         |

Every answer must be 200 (counted as an error otherwise). Prints requests/s, p50/p95/p99 for
all requests and per kind, and `p99 / 100 ms` (goal <= 1 for paged queries). Latency is the
client's: from sending the request to having read the whole body. Server, PostgreSQL and the
load process share the machine's cores (printed); a loaded machine shows up here, and so does
the CPU time the server's processes used per request and how busy the whole machine was
while measuring (from /proc, on Linux). Never fails on a missed goal; it prints it.

`--medium` is 2 000 shops × 3 months (6 M readings; about a minute to generate), between the
smoke data and the full 10 000 shops × 12 months.

    .venv/bin/python bench/api_load_bench.py [--smoke | --medium] [--clients 8] [--seconds 60]
                                             [--workers N] [--database-url postgresql://…]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import http.client
import json
import multiprocessing
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import uvicorn

from cloud import heap
from cloud.app import create_app
from cloud.db.engine import make_engine
from cloud.server import listen
from ledger.chain import NodeKey

try:
    from bench import report_data
except ModuleNotFoundError:  # run as `python bench/api_load_bench.py`: bench/ is sys.path[0]
    import report_data  # type: ignore[no-redef]

GOAL_P99_MS = 100.0
PAGE = 50
SHAPES = {**report_data.SHAPES, "medium": report_data.Shape(4, 10, 50, dt.date(2026, 4, 1), 3)}
# kind → weight in the mix
MIX = {
    "deposits": 3,
    "consumption/building": 2,
    "consumption/all": 1,
    "accounts": 2,
    "ledger": 2,
    "readings": 2,
}


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """What the load process needs to make requests (plain data: it crosses processes)."""

    base: str
    token: str
    clients: int
    warmup_s: float
    seconds: float
    first: str  # the month's first and last day
    last: str
    buildings: int
    shops: int
    shops_per_building: int
    max_ledger_id: int
    meters: tuple[str, ...]
    days: int
    mix: tuple[tuple[str, int], ...] = tuple(MIX.items())


def request_path(kind: str, plan: Plan, rng: random.Random) -> str:
    span = f"from={plan.first}&to={plan.last}"
    building = f"B{rng.randint(1, plan.buildings):02d}"
    if kind == "deposits":
        pages = max(1, plan.shops_per_building * 2 // PAGE)
        offset = PAGE * rng.randrange(pages)
        return f"/reports/deposits?{span}&building={building}&limit={PAGE}&offset={offset}"
    if kind == "consumption/building":
        offset = PAGE * rng.randrange(max(1, plan.shops_per_building // PAGE))
        return (f"/reports/consumption?{span}&group=shop&building={building}&limit={PAGE}"
                f"&offset={offset}")  # fmt: skip
    if kind == "consumption/all":
        offset = PAGE * rng.randrange(max(1, plan.shops // PAGE))
        return f"/reports/consumption?{span}&group=shop&limit={PAGE}&offset={offset}"
    if kind == "accounts":
        return f"/accounts?limit={PAGE}&offset={rng.randrange(max(1, plan.shops - PAGE))}"
    if kind == "ledger":
        return f"/ledger?after_id={rng.randrange(plan.max_ledger_id)}&limit=100"
    if kind == "readings":
        day = dt.date.fromisoformat(plan.first) + dt.timedelta(days=rng.randrange(plan.days))
        since = dt.datetime.combine(day, dt.time(), dt.UTC) - dt.timedelta(hours=8)
        until = since + dt.timedelta(days=1)
        stamp = "%Y-%m-%dT%H:%M:%SZ"
        return (f"/readings?meter={rng.choice(plan.meters)}&since={since.strftime(stamp)}"
                f"&until={until.strftime(stamp)}&limit=100")  # fmt: skip
    raise ValueError(kind)


Sample = tuple[str, float, float, int]  # kind, started (s after the start), latency (s), status


def client_loop(plan: Plan, number: int, start: float, out: list[Sample]) -> None:
    rng = random.Random(number)
    kinds, weights = [k for k, _ in plan.mix], [w for _, w in plan.mix]
    where = urlsplit(plan.base)
    connection = http.client.HTTPConnection(where.hostname or "", where.port, timeout=60)
    headers = {"Authorization": f"Bearer {plan.token}", "Connection": "keep-alive"}
    end = start + plan.warmup_s + plan.seconds
    while (now := time.perf_counter()) < end:
        kind = rng.choices(kinds, weights)[0]
        path = request_path(kind, plan, rng)
        try:
            connection.request("GET", path, headers=headers)
            answer = connection.getresponse()
            answer.read()
            status = answer.status
        except (OSError, http.client.HTTPException):
            connection.close()
            connection = http.client.HTTPConnection(where.hostname or "", where.port, timeout=60)
            status = 0
        out.append((kind, now - start, time.perf_counter() - now, status))
    connection.close()


def drive(plan: Plan, results: Any, measuring: Any) -> None:
    """The load process: `plan.clients` threads, then the samples after warm-up to `results`.
    Sets `measuring` when the warm-up is over."""
    start = time.perf_counter()
    per_client: list[list[Sample]] = [[] for _ in range(plan.clients)]
    threads = [
        threading.Thread(target=client_loop, args=(plan, n, start, per_client[n]), daemon=True)
        for n in range(plan.clients)
    ]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, start + plan.warmup_s - time.perf_counter()))
    measuring.set()
    for thread in threads:
        thread.join()
    samples = [s for client in per_client for s in client if s[1] >= plan.warmup_s]
    results.send(samples)
    results.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summarise(samples: list[Sample], seconds: float, kinds: list[str]) -> None:
    def line(name: str, chosen: list[Sample]) -> None:
        if not chosen:
            print(f"{name:<22} no requests")
            return
        ms = [s[2] * 1000 for s in chosen]
        errors = sum(1 for s in chosen if s[3] != 200)
        p99 = percentile(ms, 0.99)
        verdict = "ok" if p99 <= GOAL_P99_MS else "MISSED"
        print(f"{name:<22} {len(chosen) / seconds:7.1f} req/s  p50 {percentile(ms, 0.5):7.1f}  "
              f"p95 {percentile(ms, 0.95):7.1f}  p99 {p99:7.1f} ms  mean "
              f"{statistics.fmean(ms):7.1f}  errors {errors:3d}   p99/{GOAL_P99_MS:.0f} ms "
              f"{p99 / GOAL_P99_MS:5.2f} (goal <= 1): {verdict}")  # fmt: skip

    line("all", samples)
    for kind in kinds:
        line(f"  {kind}", [s for s in samples if s[0] == kind])


def free_listener() -> socket.socket:
    return listen("127.0.0.1", 0)  # as `voltbook-cloud serve` listens (TCP_NODELAY included)


# -- CPU accounting (Linux /proc; elsewhere not shown) ----------------------------------------

TICK_S = 1 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


def _stat_fields(pid: str) -> list[str]:
    with open(f"/proc/{pid}/stat") as stat:
        text = stat.read()
    return text[text.rindex(")") + 2 :].split()  # after "pid (command) ": state, ppid, …


def process_tree_cpu(root: int) -> float:
    """CPU seconds (user + system) used so far by process `root` and its descendants."""
    parent, used = {}, {}
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            fields = _stat_fields(pid)
        except (OSError, ValueError):
            continue  # gone meanwhile
        parent[int(pid)] = int(fields[1])
        used[int(pid)] = (int(fields[11]) + int(fields[12])) * TICK_S  # utime, stime
    tree, grown = {root}, True
    while grown:
        more = {pid for pid, up in parent.items() if up in tree} - tree
        tree |= more
        grown = bool(more)
    return sum(used.get(pid, 0.0) for pid in tree)


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


@dataclasses.dataclass(frozen=True, slots=True)
class Measured:
    samples: list[Sample]
    server_cpu_s: float | None  # over the measured window
    machine_busy: float | None  # fraction of all CPUs, every process on the machine


def measure(plan: Plan, server_cpu: Callable[[], float]) -> Measured:
    """Run the load process against `plan.base`; CPU is taken over the measured window."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    measuring = context.Event()
    load = context.Process(target=drive, args=(plan, sender, measuring))
    load.start()
    sender.close()
    measuring.wait()
    try:
        cpu0, ticks0 = server_cpu(), machine_ticks()
    except OSError:
        cpu0, ticks0 = None, None
    samples: list[Sample] = receiver.recv()
    load.join()
    if cpu0 is None or ticks0 is None:
        return Measured(samples, None, None)
    busy1, total1 = machine_ticks()
    busy = (busy1 - ticks0[0]) / max(1, total1 - ticks0[1])
    return Measured(samples, server_cpu() - cpu0, busy)


def report(title: str, plan: Plan, measured: Measured) -> None:
    print(f"\n{title}")
    print(f"mix (weights): {', '.join(f'{k} {w}' for k, w in plan.mix)}; page {PAGE} rows")
    summarise(measured.samples, plan.seconds, [k for k, _ in plan.mix])
    if measured.server_cpu_s is not None and measured.machine_busy is not None:
        requests = max(1, len(measured.samples))
        print(f"CPU: the server {measured.server_cpu_s / requests * 1000:.1f} ms per request "
              f"({measured.server_cpu_s / plan.seconds:.2f} cores); the machine "
              f"{measured.machine_busy:.0%} busy (PostgreSQL, the load process and any other "
              "jobs included)")  # fmt: skip


def serve(
    url: str, key: NodeKey | None = None
) -> tuple[uvicorn.Server, threading.Thread, str, Any]:
    """The cloud app over `url`, signing with `key` (the cloud's; a fresh one if None)."""
    engine = make_engine(url)
    app = create_app(engine, key or NodeKey.generate())
    listener = free_listener()
    port = listener.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name="bench-api", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise SystemExit("the API server did not start")
        time.sleep(0.02)
    heap.settle()  # as `voltbook-cloud serve` does once it has started
    return server, thread, f"http://127.0.0.1:{port}", engine


@contextlib.contextmanager
def serve_cli(url: str, workers: int) -> Iterator[tuple[str, int]]:
    """`voltbook-cloud serve` in a separate process with `[api] workers = workers` over the
    database at `url` (embedded broker, a fresh data dir); yields (base URL, its pid)."""
    with tempfile.TemporaryDirectory() as workdir:
        probe = free_listener()
        port = probe.getsockname()[1]
        probe.close()  # uvicorn binds it again (SO_REUSEADDR)
        config = Path(workdir) / "cloud.toml"
        config.write_text(
            # plain_port: without mosquitto the embedded broker is that loopback demo listener
            f'[database]\nurl = "{url}"\n\n[broker]\nembedded = true\nplain_port = 0\n\n'
            f'[api]\nhost = "127.0.0.1"\nport = {port}\nworkers = {workers}\n'
        )
        log = (Path(workdir) / "serve.log").open("w")
        command = [sys.executable, "-m", "cloud.cli", "serve", "--config", str(config)]
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while not _healthy(base):
                if server.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    tail = (Path(workdir) / "serve.log").read_text()[-2000:]
                    raise SystemExit(f"voltbook-cloud serve did not start:\n{tail}")
                time.sleep(0.2)
            yield base, server.pid
        finally:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            log.close()


def _healthy(base: str) -> bool:
    where = urlsplit(base)
    try:
        connection = http.client.HTTPConnection(where.hostname or "", where.port, timeout=5)
        connection.request("GET", "/health")
        status = connection.getresponse().status
        connection.close()
    except OSError:
        return False
    return status == 200


def login(base: str, user: str, password: str) -> str:
    where = urlsplit(base)
    connection = http.client.HTTPConnection(where.hostname or "", where.port, timeout=30)
    body = json.dumps({"user": user, "password": password})
    connection.request("POST", "/auth/login", body, {"Content-Type": "application/json"})
    answer = connection.getresponse()
    data = json.loads(answer.read())
    connection.close()
    if answer.status != 200:
        raise SystemExit(f"login failed: {answer.status} {data}")
    return str(data["token"])


def missing_endpoints(base: str, token: str, plan: Plan) -> list[str]:
    """Kinds whose endpoint does not answer 200 (not built yet): left out of the mix."""
    where = urlsplit(base)
    missing = []
    for kind in MIX:
        connection = http.client.HTTPConnection(where.hostname or "", where.port, timeout=120)
        path = request_path(kind, plan, random.Random(0))
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        answer = connection.getresponse()
        answer.read()
        connection.close()
        if answer.status != 200:
            missing.append(f"{kind} ({path.split('?')[0]} answered {answer.status})")
    return missing


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--smoke", action="store_true", help="small data, a few seconds, for CI")
    size.add_argument("--medium", action="store_true", help="2 000 shops × 3 months")
    parser.add_argument("--clients", type=int, help="concurrent clients (default 8; smoke 4)")
    parser.add_argument("--seconds", type=float, help="measured duration (default 60; smoke 3)")
    parser.add_argument(
        "--workers", type=int, metavar="N",
        help="then measure `voltbook-cloud serve` with [api] workers = N as well",
    )  # fmt: skip
    report_data.add_database_argument(parser)
    args = parser.parse_args()
    name = "smoke" if args.smoke else "medium" if args.medium else "full"
    shape = SHAPES[name]
    clients = args.clients or (4 if args.smoke else 8)
    seconds = args.seconds or (3.0 if args.smoke else 60.0)
    warmup = 1.0 if args.smoke else 5.0
    print(f"API load bench ({name}): {clients} clients from a second process, {seconds:.0f} s "
          f"measured after {warmup:.0f} s warm-up")  # fmt: skip
    with report_data.open_database(args.database_url) as db:
        began = time.monotonic()
        report_data.generate(db, shape)
        print(f"data ready in {time.monotonic() - began:.0f} s")
        print("\n".join(report_data.describe(db, shape)), flush=True)
        user, password = report_data.ensure_bench_user(db.url)
        with psycopg.connect(db.dsn) as conn:
            max_id = conn.execute("SELECT max(id) FROM ledger_entries").fetchone()
            meters = conn.execute("SELECT address FROM meters ORDER BY address").fetchall()
        first, after = shape.readings_month
        plan = Plan(
            base="", token="", clients=clients, warmup_s=warmup, seconds=seconds,
            first=first.isoformat(), last=(after - dt.timedelta(days=1)).isoformat(),
            buildings=shape.buildings, shops=shape.shops,
            shops_per_building=shape.shops // shape.buildings,
            max_ledger_id=int(max_id[0]) if max_id else 1,
            meters=tuple(m[0] for m in meters), days=(after - first).days,
        )  # fmt: skip
        server, thread, base, engine = serve(db.url)
        try:
            plan = ready(plan, base, login(base, user, password))
            if not plan.mix:
                return
            measured = measure(plan, time.process_time)  # the load runs in another process
        finally:
            server.should_exit = True
            thread.join(10)
            engine.dispose()
        report("server: uvicorn in a thread of this process (1 process; the CPUs serve it, "
               "PostgreSQL and the load process)", plan, measured)  # fmt: skip
        if args.workers:
            with serve_cli(db.url, args.workers) as (base, pid):
                plan = ready(plan, base, login(base, user, password))
                measured = measure(plan, lambda: process_tree_cpu(pid))
            report(f"server: voltbook-cloud serve in its own process, [api] workers = "
                   f"{args.workers} ({args.workers} API processes, the ingest worker idle)",
                   plan, measured)  # fmt: skip


def ready(plan: Plan, base: str, token: str) -> Plan:
    """`plan` against `base` with `token`, without the kinds whose endpoint does not answer."""
    plan = dataclasses.replace(plan, base=base, token=token)
    missing = missing_endpoints(base, token, plan)
    for kind in missing:
        print(f"skipped: {kind}")
    gone = {kind.split(" ")[0] for kind in missing}
    plan = dataclasses.replace(plan, mix=tuple(i for i in plan.mix if i[0] not in gone))
    if not plan.mix:
        print("skipped: no endpoint of the mix answers")
    return plan


if __name__ == "__main__":
    main()
