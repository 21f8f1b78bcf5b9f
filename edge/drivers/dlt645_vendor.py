"""Vendor DL/T 645 data identifiers per meter model: malicious-load recognition in the meter.

DL/T 645-2007 has no data identifiers for malicious-load (恶性负载) recognition. Meters that
recognise such a load themselves (and trip their own relay within seconds) keep its power and
power-factor window in vendor extensions, at identifiers and in formats each vendor chooses:
so they are a table **per model**, each row naming the document it comes from, the way the
Modbus relay maps are (`edge.drivers.modbus_maps.RELAY_MAPS`). A meter's configuration names
its `model`; a model with no row here simply gets no writes, and the concentrator's own rule
(`edge.rules.protection`) judges its readings. Nothing is invented for a model that has none.

The only row today is Voltbook's simulator's (`voltbook-sim`, `demo/sim/dlt645_responder.py`):
placeholder identifiers in the parameter range 04 at 04 F0 01 xx, which the standard leaves
unused, next to the simulator's trip counters at 03 F0 (`dlt645_items`). They are NOT any
vendor's: a real model is added as a row with its vendor document's identifiers and formats,
checked against that document (`documented=True` only then).

    item                 DI (voltbook-sim)   format            unit
    power window, low    04 F0 01 01         XXXXX.X, 3 B BCD  W
    power window, high   04 F0 01 02         XXXXX.X, 3 B BCD  W
    PF window, low       04 F0 01 03         X.XXX, 2 B BCD
    PF window, high      04 F0 01 04         X.XXX, 2 B BCD
    recognition delay    04 F0 01 05         XXXX, 2 B BCD     s
    trips (read back)    03 F0 01 00         XXXXXX, 3 B BCD   (`malicious_load_trips`)

Parameters are written with 14 (`dlt645_requests.write_request`) and the configured
credentials; the trip counter is read with the reading blocks (`abnormal_trips`) or on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from edge.drivers.dlt645_items import ITEMS_BY_NAME, DataItem, Format, from_reading_units
from edge.drivers.errors import DriverUsageError

WATTS: Final = Format(3, 1)  # XXXXX.X W
PF_UNSIGNED: Final = Format(2, 3)  # X.XXX
SECONDS: Final = Format(2)  # XXXX s


@dataclass(frozen=True, slots=True)
class MaliciousLoadSettings:
    """One window the meter recognises (`min_w`..`max_w` W at PF `min_pf`..`max_pf`), held
    for `delay_s` seconds before it trips. An empty window (all zero) recognises nothing."""

    min_w: float
    max_w: float
    min_pf: float
    max_pf: float
    delay_s: int

    def __post_init__(self) -> None:
        if not (
            0 <= self.min_w <= self.max_w
            and 0 <= self.min_pf <= self.max_pf <= 1
            and 0 <= self.delay_s <= 9999
        ):
            raise DriverUsageError(f"bad malicious-load settings {self}")


@dataclass(frozen=True, slots=True)
class MaliciousLoadMap:
    """Where one model keeps its malicious-load window and counts the trips it made."""

    model: str
    source: str  # the document this row comes from (vendor manual, or Voltbook's simulator)
    power_low: DataItem
    power_high: DataItem
    pf_low: DataItem
    pf_high: DataItem
    delay: DataItem
    trips: DataItem  # the meter's count of its own malicious-load trips
    documented: bool = False  # True only when `source` is the vendor's own document

    @property
    def parameters(self) -> tuple[DataItem, ...]:
        """The items written, in the order they are written."""
        return (self.power_low, self.power_high, self.pf_low, self.pf_high, self.delay)

    def registers(self, settings: MaliciousLoadSettings) -> tuple[tuple[DataItem, int], ...]:
        """Each parameter item with the register value that carries `settings`."""
        window = (settings.min_w, settings.max_w, settings.min_pf, settings.max_pf)
        pairs = zip(self.parameters[:4], window, strict=True)
        return (
            *((item, from_reading_units(item, value)) for item, value in pairs),
            (self.delay, settings.delay_s),
        )


SIMULATED_MODEL: Final = "voltbook-sim"
_SIMULATOR: Final = "Voltbook simulator (demo/sim/dlt645_responder.py); no vendor document"


def _parameter(name: str, di: int, fmt: Format, unit: str) -> DataItem:
    return DataItem(f"malicious_load_{name}", di, fmt, unit, vendor=True)


MALICIOUS_LOAD_MAPS: Final[Mapping[str, MaliciousLoadMap]] = MappingProxyType(
    {
        row.model: row
        for row in (
            MaliciousLoadMap(
                model=SIMULATED_MODEL,
                source=_SIMULATOR,
                power_low=_parameter("power_low", 0x04F00101, WATTS, "W"),
                power_high=_parameter("power_high", 0x04F00102, WATTS, "W"),
                pf_low=_parameter("pf_low", 0x04F00103, PF_UNSIGNED, ""),
                pf_high=_parameter("pf_high", 0x04F00104, PF_UNSIGNED, ""),
                delay=_parameter("delay", 0x04F00105, SECONDS, "s"),
                trips=ITEMS_BY_NAME["malicious_load_trips"],
            ),
        )
    }
)


def malicious_load_map(model: str | None) -> MaliciousLoadMap | None:
    """The row of `model`, or None: that model recognises nothing itself (or is unknown)."""
    return None if model is None else MALICIOUS_LOAD_MAPS.get(model)
