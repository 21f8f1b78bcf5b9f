"""LoRa timing, the China 470–510 MHz rules, and the radio bus over the simulated medium.

Time on air is checked against reference/lora.md (its check value and its table to 0.1 ms);
every refusal must say which rule broke. The bus runs against `MediumRadio` here (no pyLoRa);
tests/edge/drivers/test_sx127x_pylora.py runs it through the real library.
"""

from __future__ import annotations

import random

import pytest

from demo.sim.radio_medium import Link, MediumRadio, MeterNode, RadioMedium, VirtualClock
from edge.drivers.errors import DriverUsageError, MeterRefused, MeterTimeout
from edge.drivers.lora import (
    CHINA_470_510,
    RadioBus,
    RadioConfig,
    needs_low_data_rate_optimize,
    time_on_air,
)
from tests.edge.drivers.lora_frames import (
    ADDRESS,
    OTHER_METER_REPLY,
    READ_FORWARD_ACTIVE,
    REPLY_1234_56_KWH,
    FrameTransaction,
    ScriptedMeter,
    read_energy,
)

# -- time on air ------------------------------------------------------------------------------


def test_check_value_64_bytes_sf12_is_2_793472_s():
    airtime = time_on_air(64, 12, 125_000, cr=1, preamble=8, crc=False, implicit_header=False)
    assert airtime == pytest.approx(2.793472, abs=1e-12)


# reference/lora.md: BW125, CR 4/5, preamble 8, CRC on, explicit header.
TABLE_MS = {
    16: (51.5, 92.7, 164.9, 329.7, 659.5, 1318.9),
    32: (71.9, 133.6, 246.8, 452.6, 987.1, 1810.4),
}


@pytest.mark.parametrize(
    ("payload", "sf", "expected_ms"),
    [(p, sf, ms) for p, row in TABLE_MS.items() for sf, ms in zip(range(7, 13), row, strict=True)],
)
def test_time_on_air_matches_the_reference_table(payload, sf, expected_ms):
    airtime = time_on_air(payload, sf, 125_000, 1, 8, True, False, None)
    assert round(airtime * 1000, 1) == expected_ms


@pytest.mark.parametrize(
    ("sf", "bw_hz", "ldro"),
    [
        (10, 125_000, False),  # 8.192 ms symbols
        (11, 125_000, True),  # 16.384 ms
        (12, 125_000, True),
        (11, 250_000, False),
        (12, 250_000, True),
        (12, 500_000, False),
    ],
)
def test_low_data_rate_optimise_is_set_above_16_ms_symbols(sf, bw_hz, ldro):
    assert needs_low_data_rate_optimize(sf, bw_hz) is ldro
    config = RadioConfig(sf=sf, bw_hz=bw_hz, max_payload=8)
    assert config.low_data_rate_optimize is ldro
    assert config.time_on_air(20) == time_on_air(20, sf, bw_hz, 1, 8, True, False, ldro)


def test_ldro_changes_time_on_air_where_it_applies():
    with_de = time_on_air(64, 12, 125_000, 1, 8, False, False, True)
    without_de = time_on_air(64, 12, 125_000, 1, 8, False, False, False)
    assert with_de == pytest.approx(2.793472)
    assert without_de < with_de


def test_implicit_header_and_coding_rate_enter_the_formula():
    explicit = time_on_air(32, 7, 125_000, 1, 8, True, False)
    assert time_on_air(32, 7, 125_000, 1, 8, True, True) < explicit
    assert time_on_air(32, 7, 125_000, 4, 8, True, False) > explicit


@pytest.mark.parametrize(
    "arguments",
    [(256, 7, 125_000), (-1, 7, 125_000), (16, 5, 125_000), (16, 13, 125_000)],
)
def test_time_on_air_refuses_impossible_arguments(arguments):
    with pytest.raises(DriverUsageError):
        time_on_air(*arguments)


def test_time_on_air_refuses_bad_coding_rate():
    with pytest.raises(DriverUsageError, match="coding rate"):
        time_on_air(16, 7, 125_000, cr=5)


# -- the China 470–510 MHz rules --------------------------------------------------------------


def test_default_configuration_is_legal():
    config = RadioConfig()
    assert config.validate() is config
    assert config.violations() == ()
    assert config.rules is CHINA_470_510
    assert config.time_on_air(config.max_payload) <= 1.0


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"frequency_hz": 469_900_000}, "outside 470–510 MHz"),
        ({"frequency_hz": 510_100_000}, "outside 470–510 MHz"),
        ({"frequency_hz": 470_000_000}, "occupies 469.9375–470.0625 MHz"),  # edge spills over
        ({"bw_hz": 1_000_000}, "occupied bandwidth 1000 kHz exceeds 500 kHz"),
        ({"bw_hz": 100_000}, "not an SX127x bandwidth"),
        ({"tx_power_dbm": 20}, "e.r.p."),
        ({"antenna_gain_dbi": 6.0}, "set tx_power_dbm to 13 or less"),
        ({"sf": 12, "max_payload": 64}, "takes 2.793 s on air"),
        ({"sf": 10, "max_payload": 128}, "over the 1 s each transmission may last"),
        ({"listen_before_talk": False}, "listen-before-talk is mandatory"),
        ({"sf": 6}, "SF6 works only with an implicit header"),
        ({"sf": 13}, "SF6..SF12"),
        ({"cr": 0}, "coding rate"),
        ({"max_payload": 300}, "max_payload is 1..255"),
        ({"sync_word": 0x100}, "sync word"),
        ({"tx_power_dbm": 1}, "PA_BOOST"),
    ],
)
def test_configurations_breaking_a_rule_are_refused_with_the_reason(changes, reason):
    config = RadioConfig(**changes)
    with pytest.raises(DriverUsageError, match="radio configuration refused") as refused:
        config.validate()
    assert reason in str(refused.value)


def test_refusal_says_what_to_do():
    with pytest.raises(DriverUsageError) as refused:
        RadioConfig(sf=10, max_payload=128).validate()
    message = str(refused.value)
    # 1.231 s for 128 B at SF10; the largest payload that fits is suggested.
    assert "1.231 s" in message
    assert "reduce max_payload to 99 bytes" in message
    assert RadioConfig(sf=10, max_payload=99).validate()
    assert RadioConfig(sf=10, max_payload=100).violations()


def test_every_broken_rule_is_listed_at_once():
    config = RadioConfig(frequency_hz=868_100_000, tx_power_dbm=20, listen_before_talk=False)
    found = config.violations()
    assert len(found) == 4  # band, e.r.p., PA_BOOST range, LBT
    assert all(sentence.endswith(".") for sentence in found)


def test_erp_counts_the_antenna_gain():
    assert RadioConfig(tx_power_dbm=17, antenna_gain_dbi=2.15).erp_dbm == pytest.approx(17.0)
    assert RadioConfig(tx_power_dbm=14, antenna_gain_dbi=5.15).validate()
    assert RadioConfig(tx_power_dbm=15, antenna_gain_dbi=5.15).violations()


def test_sf6_is_legal_with_an_implicit_header():
    assert RadioConfig(sf=6, implicit_header=True, max_payload=64).validate()


def test_sf12_at_125_khz_fits_only_tiny_payloads():
    assert RadioConfig(sf=12, max_payload=4).validate()
    assert RadioConfig(sf=12, max_payload=16).violations()


# -- the radio bus over the medium (no pyLoRa) ------------------------------------------------


@pytest.fixture
def medium():
    return RadioMedium(clock=VirtualClock(), seed=3)


def _bus(medium, config=None, **options):
    config = config or RadioConfig(sf=7)
    radio = MediumRadio(medium, "concentrator", config)
    return RadioBus(radio, clock=medium.clock, **options), config


def test_bus_reads_a_meter_and_keeps_link_stats(medium):
    bus, config = _bus(medium)
    meter = MeterNode(
        medium, "meter", ScriptedMeter(READ_FORWARD_ACTIVE, REPLY_1234_56_KWH), config
    )
    medium.set_link("concentrator", "meter", Link(rssi_dbm=-101.0, snr_db=-3.5))

    assert bus.run(read_energy(), address=ADDRESS) == REPLY_1234_56_KWH
    assert meter.heard == [READ_FORWARD_ACTIVE]
    stats = bus.stats[ADDRESS]
    assert (stats.attempts, stats.successes, stats.timeouts) == (1, 1, 0)
    assert (stats.last_rssi_dbm, stats.last_snr_db) == (-101.0, -3.5)
    assert stats.success_rate == 1.0


def test_bus_skips_other_meters_packets(medium):
    bus, config = _bus(medium)
    MeterNode(
        medium,
        "meter",
        ScriptedMeter(READ_FORWARD_ACTIVE, OTHER_METER_REPLY, REPLY_1234_56_KWH),
        config,
    )
    assert bus.run(read_energy(), address=ADDRESS) == REPLY_1234_56_KWH


def test_bus_timeout_is_request_plus_turnaround_plus_largest_reply(medium):
    bus, config = _bus(medium, radio_turnaround_s=0.1)
    expected = config.time_on_air(20) + 0.5 + 0.1 + config.time_on_air(config.max_payload)
    assert bus.transaction_timeout(20, 0.5) == pytest.approx(expected)


def test_silent_meter_costs_each_attempt_one_timeout_then_raises(medium):
    bus, config = _bus(medium, retries=2)
    started = medium.clock.monotonic()
    with pytest.raises(MeterTimeout, match=f"meter {ADDRESS}.*after 3 attempts"):
        bus.run(read_energy(), address=ADDRESS)
    elapsed = medium.clock.monotonic() - started
    timeout = bus.transaction_timeout(len(READ_FORWARD_ACTIVE), 0.5)
    listen = 3 * 2 * config.symbol_time  # one CAD per attempt
    assert 3 * timeout <= elapsed <= 3 * (timeout + listen) + 1e-6
    stats = bus.stats[ADDRESS]
    assert (stats.attempts, stats.successes, stats.timeouts) == (3, 0, 3)


def test_seeded_loss_is_reproducible():
    def run_once():
        medium = RadioMedium(clock=VirtualClock(), seed=11, loss=0.2)
        bus, config = _bus(medium, retries=5, rng=random.Random(1))
        MeterNode(medium, "meter", ScriptedMeter(READ_FORWARD_ACTIVE, REPLY_1234_56_KWH), config)
        for _ in range(10):
            bus.run(read_energy(), address=ADDRESS)
        return bus.stats[ADDRESS], medium.stats.lost

    first, second = run_once(), run_once()
    assert first == second
    assert first[0].successes == 10
    assert first[0].timeouts == first[0].attempts - 10 > 0


def test_bus_refuses_a_request_longer_than_max_payload(medium):
    bus, _ = _bus(medium, RadioConfig(sf=7, max_payload=16))

    def oversized():
        yield FrameTransaction(READ_FORWARD_ACTIVE, REPLY_1234_56_KWH)

    with pytest.raises(DriverUsageError, match="does not fit the radio's max_payload of 16"):
        bus.run(oversized(), address=ADDRESS)
    assert medium.stats.transmissions == 0


def test_broadcast_is_sent_once_without_waiting(medium):
    bus, _ = _bus(medium)
    time_sync = bytes.fromhex("68 999999999999 68 08 06 89674563 3958 9D 16")

    def broadcast():
        yield FrameTransaction(time_sync, b"", expects_reply=False)
        return "sent"

    assert bus.run(broadcast(), address="999999999999") == "sent"
    assert [t.payload for t in medium.air_log] == [time_sync]


def test_bus_refuses_an_illegal_radio():
    medium = RadioMedium(clock=VirtualClock())
    radio = MediumRadio(medium, "concentrator", RadioConfig())
    object.__setattr__(radio, "_config", RadioConfig(listen_before_talk=False))
    with pytest.raises(DriverUsageError, match="listen-before-talk is mandatory"):
        RadioBus(radio)


def test_retries_can_be_overridden_per_conversation(medium):
    bus, _ = _bus(medium, retries=2)
    with pytest.raises(MeterTimeout, match="after 1 attempt of"):
        bus.run(read_energy(), address=ADDRESS, retries=0)  # a discovery probe
    stats = bus.stats[ADDRESS]
    assert (stats.attempts, stats.conversations, stats.failures) == (1, 1, 1)
    assert stats.as_dict()["success_rate"] == 0.0
    with pytest.raises(DriverUsageError, match="retries must be"):
        bus.run(read_energy(), address=ADDRESS, retries=-1)


def test_an_error_reply_is_an_answer_and_is_not_retried(medium):
    bus, config = _bus(medium)
    error_reply = bytes.fromhex("68129078563412 68 D1 01 35 8D 16")
    MeterNode(medium, "meter", ScriptedMeter(READ_FORWARD_ACTIVE, error_reply), config)

    def refused_read():
        transaction = yield FrameTransaction(READ_FORWARD_ACTIVE, error_reply)
        raise MeterRefused(("no such data",), code=0x02, address=ADDRESS)
        return transaction  # pragma: no cover

    with pytest.raises(MeterRefused):
        bus.run(refused_read(), address=ADDRESS)
    stats = bus.stats[ADDRESS]
    assert (stats.attempts, stats.successes, stats.failures) == (1, 1, 1)
