"""The reading row: one meter read, as it travels from the concentrator's store to the cloud.

The layout is defined here once. The edge store writes it (its SQLite `readings` columns and
its outbox payloads are in this order), the uplink batches it, `ledger.wire` sends it as
columns, the cloud's ingest checks read it, and the benches and test doubles build it:

| #  | field       | type               | what                                           |
|----|-------------|--------------------|------------------------------------------------|
| 0  | `meter`     | str                | meter address                                  |
| 1  | `time`      | int                | when it was read, ms since the Unix epoch (UTC)|
| 2  | `energy_wh` | int or None        | total active energy register, Wh               |
| 3  | `tariff_wh` | str or None        | tariff registers "sharp,peak,flat,valley", Wh  |
| 4  | `voltage`   | float or None      | V                                              |
| 5  | `current`   | float or None      | A                                              |
| 6  | `power`     | float or None      | active power, W                                |
| 7  | `pf`        | float or None      | power factor                                   |
| 8  | `relay`     | int or None        | 1 closed, 0 open                               |
| 9  | `status`    | str or None        | status words, comma-separated integers         |
| 10 | `extra`     | JSON object or None| the rare fields (`edge.store.records`)         |

`extra` stays a JSON value (an object, as the edge writes it) the whole way: in the edge's
outbox payload, in the uplink batch and on the wire it is JSON already. It becomes text only
where a text column holds it — the edge's SQLite `readings.extra` (`edge.store.records`) and
the cloud's `readings.extra` (`cloud.ingest.checks`).
"""

from __future__ import annotations

from typing import Any, NamedTuple


class ReadingRow(NamedTuple):
    meter: str
    time: int  # ms since the Unix epoch (UTC)
    energy_wh: int | None
    tariff_wh: str | None  # "sharp,peak,flat,valley" (Wh)
    voltage: float | None
    current: float | None
    power: float | None
    pf: float | None
    relay: int | None  # 1 closed, 0 open
    status: str | None  # status words, comma-separated
    extra: Any  # a JSON object (dict) of the rare fields, or None


READING_FIELDS: tuple[str, ...] = ReadingRow._fields
