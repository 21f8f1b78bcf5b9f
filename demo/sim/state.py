"""The physical state of a simulated meter, shared by its protocol responder and its load model.

The load model (`demo.sim.load`) advances energy and instantaneous values as simulated time
passes; the protocol responders (DL/T 645, CJ/T 188, Modbus) answer requests from this state and
apply relay or valve commands to it. Energy is kept in integer milli-watt-hours so that slow
accumulation never loses a fraction; meters show it at their register resolution.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass(slots=True)
class MeterState:
    address: str  # as printed on the meter (12 digits DL/T 645, 14 CJ/T 188, unit id Modbus)
    protocol: str  # dlt645, dlt645-1997, cjt188, sdm120, sdm630, ddsu666
    energy_mwh: int = 0  # total active import, milli-Wh
    tariff_mwh: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # sharp/peak/flat/valley
    voltage_v: float = 220.0
    current_a: float = 0.0
    power_w: float = 0.0
    reactive_var: float = 0.0
    power_factor: float = 1.0
    frequency_hz: float = 50.0
    relay_closed: bool = True
    keep_power: bool = False
    alarm: bool = False
    clock: dt.datetime = field(default_factory=lambda: dt.datetime(2026, 11, 1, 0, 0, 0))
    counters: dict[str, int] = field(default_factory=dict)  # e.g. overload_trips
    # Vendor parameters written by the concentrator, registers by item name (the malicious-load
    # window of `edge.drivers.dlt645_vendor`); kept through restarts like a meter's EEPROM.
    parameters: dict[str, int] = field(default_factory=dict)
    suspect_s: float = 0.0  # how long the load has matched that window (lost at a power cut)
    volume_ml: int = 0  # water meters
    valve_open: bool = True

    @property
    def energy_wh(self) -> int:
        return self.energy_mwh // 1000
