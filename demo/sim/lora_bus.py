"""A simulated bus whose meters answer over LoRa: what serves a `simulated` bus with
`radio = "lora"` in site.toml.

    RadioBus (edge.drivers.lora, the runtime's own)
      └─ Sx127xRadio (edge.drivers.sx127x) ─ the real pyLoRa ─ fake spidev/RPi.GPIO
           └─ Sx127xStandIn "concentrator" ─┐
                                            RadioMedium (seeded loss, bit errors, collisions)
           MeterNode "<address>" ───────────┘   one per meter, its simulated responder behind

The concentrator's side is exactly what runs on a Pi, down to the SPI register writes; only
the chip and the air are simulated. Each meter's link is drawn once from the site's seed (a
level, an SNR, a loss and corruption rate), so the same site loses the same packets, and the
runtime's retries are what get the readings through.

Time: in-process (a `ManualClock`, `--speed`) the medium runs on a `VirtualClock`, so a second
of air costs microseconds, as a `DirectBus` has no wire timing; otherwise on the real
monotonic clock, as a pty bus keeps real wire timing.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Mapping
from typing import Final

from demo.sim.radio_medium import Link, MeterNode, RadioMedium, VirtualClock
from demo.sim.sx127x_standin import install_fake_board
from edge.drivers.base import Responder
from edge.drivers.lora import Clock, RadioBus, RadioConfig, SystemClock
from edge.drivers.sx127x import Sx127xRadio
from edge.site.model import BusConfig

CONCENTRATOR: Final = "concentrator"  # the concentrator's chip on the medium

# The air of a market hall: most packets arrive, a few are missed or garbled (CRC errors).
RADIO_LOSS: Final = 0.01
RSSI_DBM: Final = (-112.0, -80.0)  # well above SF9/125 kHz sensitivity (about -129 dBm)
SNR_DB: Final = (-2.0, 9.0)
CORRUPTION: Final = 0.005


def _seed_of(bus: BusConfig, seed: int) -> int:
    """The same bus of the same site draws the same air every boot (not `hash()`: salted)."""
    return seed * 1_000_003 + zlib.crc32(bus.name.encode())


class LoraAir:
    """One simulated LoRa bus: its medium, the concentrator's radio, a node per meter.

    `bus` is the `RadioBus` the runtime reads; `attach` puts one more meter on the air (a
    meter a new configuration adds); `close()` puts the chip to sleep.
    """

    def __init__(
        self,
        bus: BusConfig,
        responders: Mapping[str, Responder],
        *,
        real_time: bool,
        seed: int,
    ) -> None:
        self.config: RadioConfig = bus.radio_config().validate()
        clock: Clock = SystemClock() if real_time else VirtualClock()
        self._links = random.Random(_seed_of(bus, seed))
        self.medium = RadioMedium(clock=clock, seed=_seed_of(bus, seed), loss=RADIO_LOSS)
        self.nodes: dict[str, MeterNode] = {}
        board = install_fake_board(self.medium, names=(CONCENTRATOR,))
        try:
            self.radio = Sx127xRadio(self.config, clock=clock)
        finally:
            # pyLoRa bound its SPI handle and GPIO module at import; the radio keeps them. Taking
            # the fakes out of sys.modules now leaves nothing behind for other code to trip on,
            # and lets a second simulated radio bus import its own pyLoRa onto its own board.
            board.restore()
        self.bus = RadioBus(self.radio, clock=clock, rng=random.Random(_seed_of(bus, seed)))
        for address, responder in responders.items():
            self.attach(address, responder)

    def attach(self, address: str, responder: Responder) -> None:
        if address in self.nodes:
            return  # already on the air (its responder reads the building's live state)
        self.nodes[address] = MeterNode(self.medium, address, responder, self.config)
        draw = self._links
        link = Link(
            rssi_dbm=round(draw.uniform(*RSSI_DBM), 1),
            snr_db=round(draw.uniform(*SNR_DB), 2),
            corruption=CORRUPTION,
        )
        self.medium.set_link(CONCENTRATOR, address, link)

    def close(self) -> None:
        self.radio.close()
