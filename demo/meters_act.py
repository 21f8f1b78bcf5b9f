"""`make demo`, act 2: a simulated building's meters, read the way real ones are.

Three simulated RS-485 buses on virtual serial ports with real wire timing (DL/T 645 at 2400 8E1,
an Eastron SDM120 over Modbus RTU, a CJ/T 188 water meter), discovered, read into a table, one
relay tripped and confirmed by read-back; then a DL/T 645 meter read over a simulated LoRa link
(470.3 MHz, SF9) with its time on air.
"""

from __future__ import annotations

import datetime as dt
import time
from zoneinfo import ZoneInfo

from demo.sim.dlt645_responder import Dlt645Responder
from demo.sim.radio_medium import Link, MediumRadio, MeterNode, RadioMedium, VirtualClock
from demo.sim.site import BusSpec, SimulatedSite
from demo.sim.state import MeterState
from edge.drivers.base import Bus, Conversation
from edge.drivers.bus import SerialBus
from edge.drivers.discovery import discover
from edge.drivers.dlt645_meter import DLT645_2007
from edge.drivers.lora import RadioBus, RadioConfig
from edge.drivers.reading import Reading
from edge.drivers.registry import driver_for

HEADER = (
    f"  {'meter':16} {'protocol':9} {'kWh / m³':>12} {'V':>6} {'A':>6} {'W':>7} {'PF':>5}  relay"
)


def _row(protocol: str, r: Reading) -> str:
    if r.volume_l is not None:
        volume = f"{r.volume_l / 1000:.3f}"
        blank = " " * 29
        return f"  {r.address:16} {protocol:9} {volume:>12} {blank}  valve {r.valve}"
    energy = f"{(r.energy_wh or 0) / 1000:.2f}"
    return (
        f"  {r.address:16} {protocol:9} {energy:>12} {r.voltage_v or 0:6.1f} "
        f"{r.current_a or 0:6.2f} {r.power_w or 0:7.0f} {r.power_factor or 0:5.2f}  "
        f"{r.relay or 'unknown'}"
    )


def _progress(message: str) -> None:
    print(f"    {message}")


def _timed(bus: Bus, conversation: Conversation[Reading], address: str) -> tuple[Reading, float]:
    start = time.monotonic()
    reading = bus.run(conversation, address=address)
    return reading, time.monotonic() - start


def act_meters() -> None:
    print("\n== Act 2: meters on RS-485 and LoRa, simulated at the byte level")
    specs = [
        BusSpec(protocol="dlt645", meters=4, wire_timing=True),
        BusSpec(protocol="sdm120", meters=1, wire_timing=True),
        BusSpec(protocol="cjt188", meters=1, wire_timing=True),
    ]
    # Simulated time starts at 11:00 on a weekday, when the shops are open.
    opening = dt.datetime(2026, 11, 23, 11, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    with SimulatedSite(specs, seed=2026, start=opening).start() as site:
        dlt_bus = site.buses[0]
        settings = dlt_bus.spec.settings()
        byte_ms = settings.byte_time * 1000
        print(
            f"  DL/T 645 bus on {dlt_bus.port} at {settings.baudrate} 8E1 ({byte_ms:.2f} ms/byte)"
        )
        with SerialBus(dlt_bus.port, settings) as bus:
            found = discover(bus, DLT645_2007, window=0.06, progress=_progress)
            print(
                f"  scan: {len(found.addresses)} meters found in {found.elapsed_s:.1f} s "
                f"({found.probes} probes, {found.collisions} collisions resolved)"
            )
            print(HEADER)
            bus.start_round()
            for address in found.addresses:
                reading, seconds = _timed(bus, DLT645_2007.read(address, "basic"), address)
                print(_row("dlt645", reading) + f"   ({seconds:.2f} s, 7 round trips)")
            report = bus.end_round()
            print(f"  read round: success rate {report.success_rate:.0%}, {report.duration:.1f} s")
            victim = max(found.addresses, key=lambda a: dlt_bus.meter(a).state.power_w)
            state = bus.run(DLT645_2007.relay(victim, "trip"), address=victim)
            print(f"  trip {victim}: relay {state} (confirmed by reading status word 3 back)")
            reading = bus.run(DLT645_2007.read(victim, "basic"), address=victim)
            closed = bus.run(DLT645_2007.relay(victim, "close"), address=victim)
            print(f"  its load now: {reading.power_w:.0f} W; closing it again: relay {closed}")
        for sim_bus in site.buses[1:]:
            driver = driver_for(sim_bus.spec.protocol, sim_bus.spec.settings())
            with SerialBus(sim_bus.port, sim_bus.spec.settings()) as bus:
                for address in sim_bus.addresses:
                    reading = bus.run(driver.read(address, "basic"), address=address)
                    print(_row(sim_bus.spec.protocol, reading))

    config = RadioConfig(frequency_hz=470_300_000, sf=9, bw_hz=125_000)
    medium = RadioMedium(clock=VirtualClock(), seed=3, loss=0.2)
    meter = MeterState(address="470300000001", protocol="dlt645", energy_mwh=812_340_000)
    MeterNode(medium, "meter", Dlt645Responder(meter), config)
    medium.set_link("concentrator", "meter", Link(rssi_dbm=-104.0, snr_db=3.5))
    radio_bus = RadioBus(MediumRadio(medium, "concentrator", config), clock=medium.clock, retries=4)
    reading = radio_bus.run(DLT645_2007.read(meter.address, "energy"), address=meter.address)
    link = radio_bus.stats[meter.address]
    print(
        f"  LoRa 470.3 MHz SF9/125 kHz, 20 % packet loss: {meter.address} reads "
        f"{(reading.energy_wh or 0) / 1000:.2f} kWh after {link.attempts} attempts "
        f"(a 20-byte request is {config.time_on_air(20) * 1000:.0f} ms on air; limit 1 s)"
    )
