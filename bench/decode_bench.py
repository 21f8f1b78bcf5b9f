"""DL/T 645 decoder throughput against the `dlt645` PyPI package, measured in the same run.

Both decoders get the same reply frames (the reference's worked replies plus the replies a
simulated meter gives to every reading block, each with the FE×4 wake-up preamble), one frame
at a time as a bus delivers them. Prints frames/s for each and the ratio (goal: >= 3x the
package), then the CPU cost of whole readings: frames decoded, values converted and typed into
`Reading`, per 1 000 readings (time.process_time), and what share of a 2400-baud bus's time
that is. Never fails on a missed goal; it prints it.

Then the line-noise figure (issue 12, item 11): the same seeded random bytes fed to the Modbus
RTU reply hunt (`RtuStream`, what a `ModbusTransaction` runs on every byte it hears) and to the
DL/T 645 `Decoder`, byte by byte (the worst case: one read per byte) and in 16-byte chunks (a
USB RS-485 adapter's usual delivery), as CPU per byte and the share of one core it takes at
9600 and 19200 baud, and Modbus's cost as a ratio of DL/T 645's (goal: within 2x).
`--noise-only` prints only that figure (to run it against another checkout's `edge/`, e.g.
`PYTHONPATH=../base python bench/decode_bench.py --noise-only --smoke`).

Last, stored ledger entries (issue 18, item 1): decoding one body into its `Transfer`
(`ledger.encoding.decode_transfer`, either format) against its peers in the same run, the
entry's chain hash (`ledger.chain.entry_hash` over the same stored bytes; goal: decoding ≤ 2×)
and a bare SHA-256 of the stored bytes (goal ≤ 5×), for a recharge and for a consumption leg
(the edge's commonest entry: six refs), in format versions 1 and 2. A version-2 body is decoded
by the decoder of its layout, learnt from the bodies before it (`ledger.body_layouts`); the
figure for a body whose layout is met for the first time (the general decoder) follows.
`--entries-only` prints only that figure.

    .venv/bin/python bench/decode_bench.py [--smoke] [--noise-only | --entries-only]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from demo.sim.dlt645_responder import Dlt645Responder
from demo.sim.state import MeterState
from edge.drivers.base import SerialSettings
from edge.drivers.dlt645 import Decoder, decode_frame, encode_frame
from edge.drivers.dlt645_items import BLOCKS_2007, build_reading, decode_reply
from edge.drivers.dlt645_requests import read_request
from ledger.accounts import Pocket, System, Unit, pocket_id, system_id
from ledger.chain import entry_hash
from ledger.encoding import decode_transfer, encode_body
from ledger.encoding_v2 import LAYOUTS
from ledger.transfers import Code, TimeSource, Transfer

METER = "123456789012"
GOAL = 3.0
NOISE_GOAL = 2.0  # Modbus hunt CPU on noise within 2x of the DL/T 645 decoder's
NOISE_BAUDS = (9600, 19200)
NOISE_BATCH = 512  # bytes fed per timed unit
ENTRY_GOALS = (2.0, 5.0)  # decoding a stored entry vs its chain hash, vs a bare SHA-256
REFERENCE_REPLIES = [
    "FE FE FE FE 68 12 90 78 56 34 12 68 91 08 33 33 34 33 89 67 45 33 54 16",
    "FE FE FE FE 68 12 90 78 56 34 12 68 91 06 33 34 34 35 34 55 76 16",
    "FE FE FE FE 68 12 90 78 56 34 12 68 D1 01 35 8D 16",
    "FE FE FE FE 68 12 90 78 56 34 12 68 9C 00 22 16",
]


def simulated_meter() -> Dlt645Responder:
    state = MeterState(
        address=METER,
        protocol="dlt645",
        energy_mwh=1_234_567_891,
        tariff_mwh=[100_000_000, 400_000_000, 534_567_891, 200_000_000],
        voltage_v=220.1,
        current_a=5.123,
        power_w=1127.5,
        power_factor=0.95,
        clock=dt.datetime(2026, 11, 1, 8, 30, 15),
        counters={"malicious_load_trips": 2, "overload_trips": 3, "over_voltage_trips": 1},
    )
    return Dlt645Responder(state)


def block_replies(meter: Dlt645Responder, block: str) -> list[bytes]:
    """The replies the simulated meter gives, one per row of `block`."""
    replies = []
    for item in BLOCKS_2007[block].items:
        replies += meter.feed(encode_frame(read_request(METER, item.di)))
    return replies


def rate(run_once: Callable[[], int], seconds: float) -> float:
    """Units per CPU second of `run_once` (which returns the units it did), over `seconds`."""
    done, start = 0, time.process_time()
    while (elapsed := time.process_time() - start) < seconds:
        done += run_once()
    return done / elapsed


def ours(frames: list[bytes]) -> Callable[[], int]:
    decoder = Decoder()

    def run_once() -> int:
        for raw in frames:
            decoder.feed(raw)
            if decoder.next_frame() is None:
                raise AssertionError("our decoder missed a frame")
        return len(frames)

    return run_once


def theirs(frames: list[bytes]) -> Callable[[], int]:
    from dlt645.protocol.protocol import DLT645Protocol

    parse = DLT645Protocol.deserialize_with_remaining

    def run_once() -> int:
        for raw in frames:
            if parse(raw)[1] is None:
                raise AssertionError("dlt645 package missed a frame")
        return len(frames)

    return run_once


def chunks_of(frames: list[bytes], size: int) -> list[bytes]:
    """The frames as one byte stream cut every `size` bytes, as a serial port delivers them."""
    stream = b"".join(frames)
    return [stream[i : i + size] for i in range(0, len(stream), size)]


def ours_stream(frames: list[bytes], size: int) -> Callable[[], int]:
    chunks, decoder = chunks_of(frames, size), Decoder()

    def run_once() -> int:
        found = 0
        for chunk in chunks:
            decoder.feed(chunk)
            while decoder.next_frame() is not None:
                found += 1
        if found != len(frames):
            raise AssertionError(f"our decoder found {found} of {len(frames)} frames")
        return found

    return run_once


def theirs_stream(frames: list[bytes], size: int) -> Callable[[], int]:
    from dlt645.protocol.protocol import DLT645Protocol

    parse, chunks = DLT645Protocol.deserialize_with_remaining, chunks_of(frames, size)

    def run_once() -> int:
        found, buffer = 0, b""
        for chunk in chunks:
            buffer += chunk
            while True:
                buffer, frame = parse(buffer)
                if frame is None:
                    break
                found += 1
        if found != len(frames):
            raise AssertionError(f"dlt645 package found {found} of {len(frames)} frames")
        return found

    return run_once


def readings(frames: list[bytes], block: str) -> Callable[[], int]:
    """Decode one block's reply frames and type them into a `Reading`: one reading a call."""
    rows = BLOCKS_2007[block].items
    decoder = Decoder()

    def run_once() -> int:
        values = []
        for raw, row in zip(frames, rows, strict=True):
            decoder.feed(raw)
            frame = decoder.next_frame()
            if frame is None:
                raise AssertionError("missed a frame")
            values += decode_reply(row, frame.data[4:], address=frame.address)
        build_reading(METER, values)
        return 1

    return run_once


class _Hunt:
    """A `ModbusTransaction` hunting unit 1's reply in noise, as the bus feeds it, made new
    when noise happens to hold a CRC-valid frame of unit 1 (so it ever keeps hunting)."""

    def __init__(self) -> None:
        from edge.drivers.modbus_meters import SDM120  # pymodbus: only for this figure

        self._read = SDM120().read
        self._tx = next(self._read("1", "energy"))

    def feed(self, data: bytes) -> None:
        self._tx.feed(data)
        if self._tx.done():
            self._tx = next(self._read("1", "energy"))

    def next_frame(self) -> None:
        return None  # the transaction pulls its frames itself, inside feed()


def _every_unit() -> object:
    from edge.drivers.modbus_meters import RtuStream

    return RtuStream(is_server=False)


def noise_feeder(make: Callable[[], object], chunk: int, seed: int = 645) -> Callable[[], int]:
    """Feed endless seeded noise in `chunk`-byte reads to a stream decoder, pulling frames
    after every read as a transaction does; one call feeds `NOISE_BATCH` bytes."""
    rng = random.Random(seed)
    noise = rng.randbytes(64 * 1024)
    decoder = make()
    feed, next_frame = decoder.feed, decoder.next_frame  # type: ignore[attr-defined]
    position = 0

    def run_once() -> int:
        nonlocal position
        for _ in range(NOISE_BATCH // chunk):
            if position + chunk > len(noise):
                position = 0
            feed(noise[position : position + chunk])
            position += chunk
            while next_frame() is not None:
                pass
        return NOISE_BATCH

    for _ in range(8):  # warm up: the buffer reaches its steady state before timing
        run_once()
    return run_once


def noise_figure(seconds: float) -> None:
    print(
        "line noise (seeded random bytes): CPU per byte and share of one core; 'modbus' is a "
        "transaction hunting its reply (the goal), 'any unit' the bare RtuStream"
    )
    for chunk in (1, 16):
        costs = {}
        for name, make in (("modbus", _Hunt), ("any unit", _every_unit), ("dlt645", Decoder)):
            costs[name] = 1 / rate(noise_feeder(make, chunk), seconds)
        shares = []
        for baud in NOISE_BAUDS:
            per_s = 1 / SerialSettings(baudrate=baud, parity="N").byte_time
            shares.append(
                f"{baud} Bd: " + ", ".join(f"{n} {c * per_s:.3%}" for n, c in costs.items())
            )
        ratio = costs["modbus"] / costs["dlt645"]
        verdict = "met" if ratio <= NOISE_GOAL else "MISSED"
        per_byte = ", ".join(f"{n} {c * 1e6:.2f}" for n, c in costs.items())
        print(f"  {chunk:>2}-byte reads: µs/byte {per_byte}")
        print(f"      {'; '.join(shares)}")
        print(f"      modbus/dlt645 ratio {ratio:.2f} (goal <= {NOISE_GOAL:g}x: {verdict})")


def stored_entries() -> dict[str, Transfer]:
    """A recharge and a consumption leg as the edge books them."""
    common = {"time": "2026-11-01T08:15:00+08:00", "time_source": TimeSource.NTP}
    return {
        "recharge": Transfer(
            id=(7 << 100) + 1, debit=system_id(System.CASH_IN_TRANSIT),
            credit=pocket_id("A0042", Pocket.PREPAID), amount=5000, unit=Unit.FEN,
            code=Code.RECHARGE, refs={"payment": "WX0000000001", "method": "wechat"}, **common,
        ),
        "consumption leg": Transfer(
            id=(9 << 100) + 2, debit=pocket_id("A0042", Pocket.PREPAID),
            credit=system_id(System.ENERGY_SALES), amount=103, unit=Unit.FEN,
            code=Code.CONSUME, linked=True, refs={
                "meter": "123456789012", "reg_from": 1_000_000, "reg_to": 1_003_230,
                "energy_wh": 1230, "cost_cum": 10_288_950, "tariff": "peak:1230@8365"},
            **common,
        ),
    }  # fmt: skip


def entry_figure(seconds: float) -> None:
    print("stored ledger entries: µs to decode one body, to hash it into the chain, to SHA-256 it")
    prev = bytes(range(32))
    for name, transfer in stored_entries().items():
        for version in (1, 2):
            body = encode_body(transfer, version)
            assert decode_transfer(body) == transfer

            def decode(body: bytes = body) -> int:
                for _ in range(100):
                    decode_transfer(body)
                return 100

            def chain_hash(body: bytes = body) -> int:
                for _ in range(100):
                    entry_hash("edge-0001", 12345, prev, body)
                return 100

            def sha256(body: bytes = body, sha: Callable[[bytes], Any] = hashlib.sha256) -> int:
                for _ in range(100):
                    sha(body).digest()
                return 100

            def unlearnt(body: bytes = body) -> int:
                for _ in range(100):
                    LAYOUTS.forget()
                    decode_transfer(body)
                return 100

            runs = (decode, chain_hash, sha256, unlearnt)[: 4 if version == 2 else 3]
            costs = [1e6 / rate(run, seconds) for run in runs]
            ratios = costs[0] / costs[1], costs[0] / costs[2]
            met = all(r <= g for r, g in zip(ratios, ENTRY_GOALS, strict=True))
            verdict = "met" if met else "MISSED"
            print(
                f"  {name}, version {version} ({len(body)} B): decode {costs[0]:.2f} µs, "
                f"chain hash {costs[1]:.2f} µs, SHA-256 {costs[2]:.2f} µs; decode = "
                f"{ratios[0]:.2f}× the chain hash, {ratios[1]:.1f}× the SHA-256 "
                f"(goals <= {ENTRY_GOALS[0]:g}×, <= {ENTRY_GOALS[1]:g}×: {verdict})"
            )
            if version == 2:
                print(
                    f"      its layout not learnt yet (the general decoder): {costs[3]:.2f} µs "
                    f"= {costs[3] / costs[1]:.2f}× the chain hash"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a quick run (about 2 s)")
    parser.add_argument("--noise-only", action="store_true", help="only the line-noise figure")
    parser.add_argument("--entries-only", action="store_true", help="only the ledger entries")
    args = parser.parse_args()
    seconds = 0.2 if args.smoke else 2.0
    logging.disable(logging.CRITICAL)  # the package logs every frame; not what we measure
    if args.noise_only:
        noise_figure(seconds)
        return
    if args.entries_only:
        entry_figure(seconds)
        return

    meter = simulated_meter()
    per_block = {block: block_replies(meter, block) for block in BLOCKS_2007}
    frames = [bytes.fromhex(r) for r in REFERENCE_REPLIES]
    frames += [raw for replies in per_block.values() for raw in replies]
    for raw in frames:  # both decoders must agree on every frame before we time them
        from dlt645.protocol.protocol import DLT645Protocol

        peer = DLT645Protocol.deserialize_with_remaining(raw)[1]
        mine = decode_frame(raw)
        assert peer is not None and bytes(peer.data) == mine.data, raw.hex(" ")

    ours_rate = rate(ours(frames), seconds)
    theirs_rate = rate(theirs(frames), seconds)
    ratio = ours_rate / theirs_rate
    verdict = "met" if ratio >= GOAL else "MISSED"
    print(f"frames: {len(frames)} distinct replies, {sum(map(len, frames))} bytes")
    print(
        f"decode: {ours_rate:,.0f} frames/s, dlt645 pkg: {theirs_rate:,.0f} frames/s, "
        f"ratio {ratio:.2f} (goal >= {GOAL:g}: {verdict})"
    )
    ours_rate = rate(ours_stream(frames, 32), seconds)
    theirs_rate = rate(theirs_stream(frames, 32), seconds)
    ratio = ours_rate / theirs_rate
    print(
        f"stream in 32-byte chunks: {ours_rate:,.0f} frames/s, dlt645 pkg: "
        f"{theirs_rate:,.0f} frames/s, ratio {ratio:.2f}"
    )
    byte_time = SerialSettings(baudrate=2400).byte_time
    for block in ("basic", "energy", "status"):
        replies = per_block[block]
        cpu_per_reading = 1 / rate(readings(replies, block), seconds / 2)
        wire = sum(len(r) for r in replies) * byte_time  # the replies alone, at 2400 baud
        print(
            f"reading '{block}' ({len(replies)} frames): "
            f"{cpu_per_reading * 1000:.3f} CPU s per 1 000 readings decoded into Reading; "
            f"{cpu_per_reading / wire:.4%} of the 2400-baud wire time of its replies"
        )
    noise_figure(seconds)
    entry_figure(seconds)


if __name__ == "__main__":
    main()
