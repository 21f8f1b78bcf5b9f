"""The real pyLoRa 0.3.1 library, run against the register-level SX127x stand-in.

Each test installs fake `spidev`/`RPi.GPIO` modules (a fresh board and medium), lets
`Sx127xRadio` import pyLoRa on top of them, and restores `sys.modules` afterwards. Time is a
`VirtualClock`: the radio's polling sleeps move simulated time on, so a second of air costs
microseconds. (pyLoRa's `BOARD.setup()` still blinks its LED with real 0.1 s sleeps.)
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest

from demo.sim.radio_medium import Link, MeterNode, Modulation, RadioMedium, VirtualClock
from demo.sim.sx127x_standin import install_fake_board
from edge.drivers.errors import ChannelBusy, DriverUsageError, MeterTimeout, RadioFault
from edge.drivers.lora import RadioBus, RadioConfig
from edge.drivers.sx127x import Sx127xRadio
from tests.edge.drivers.lora_frames import (
    ADDRESS,
    READ_FORWARD_ACTIVE,
    REPLY_1234_56_KWH,
    ScriptedMeter,
    read_energy,
)

CONFIG = RadioConfig(frequency_hz=470_300_000, sf=9, bw_hz=125_000)


def _pylora_modules() -> list[str]:
    return [m for m in sys.modules if m.split(".")[0] in ("SX127x", "spidev", "RPi")]


@pytest.fixture
def air():
    """A medium on a virtual clock with a fake Pi board (one SX127x on CS0) installed."""
    before = _pylora_modules()
    medium = RadioMedium(clock=VirtualClock(), seed=7)
    board = install_fake_board(medium)
    try:
        yield medium, board
    finally:
        board.restore()
    assert _pylora_modules() == before


def _radio(medium, config=CONFIG, **options):
    return Sx127xRadio(config, clock=medium.clock, **options)


def _meter(medium, config=CONFIG):
    meter = MeterNode(
        medium, "meter", ScriptedMeter(READ_FORWARD_ACTIVE, REPLY_1234_56_KWH), config
    )
    medium.set_link("concentrator", "meter", Link(rssi_dbm=-97.0, snr_db=7.25))
    return meter


def _concentrator_sends(medium):
    return [t for t in medium.air_log if t.sender == "concentrator"]


# -- import and board ---------------------------------------------------------------------------


def test_importing_the_backend_does_not_import_pylora():
    probe = (
        "import sys, edge.drivers.sx127x, edge.drivers.lora; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('SX127x', 'spidev', 'RPi')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)


def test_pylora_imports_onto_the_fake_board(air):
    medium, board = air
    _radio(medium)
    assert "SX127x.LoRa" in sys.modules
    assert ("setmode", (11,)) in board.gpio.calls  # BCM numbering
    assert ("output", (22, 0)) in board.gpio.calls  # BOARD.reset() pulsed NRESET
    assert sorted(board.gpio.callbacks) == [4, 17, 18, 27]  # DIO0..3 registered, never fired


def test_an_empty_chip_select_is_reported(air):
    medium, _ = air
    with pytest.raises(RadioFault, match=r"RegVersion reads 0x00.*CS1"):
        _radio(medium, board=2)


def test_implicit_header_is_refused_before_touching_the_board(air):
    medium, board = air
    with pytest.raises(DriverUsageError, match="explicit LoRa header"):
        _radio(medium, RadioConfig(sf=6, implicit_header=True, max_payload=64))
    assert board.gpio.calls == []


# -- registers ---------------------------------------------------------------------------------


def test_470_3_mhz_is_written_as_frf_75_93_33(air):
    medium, board = air
    _radio(medium)
    chip = board.chip
    assert (0x86, 0x75, 0x93, 0x33) in chip.spi_log  # burst write RegFrf 0x06..0x08
    assert bytes(chip.registers[0x06:0x09]) == bytes.fromhex("759333")
    assert chip.frequency_hz == 470_299_988  # 61 Hz steps, floored


def test_modem_registers_follow_the_configuration(air):
    medium, board = air
    radio = _radio(medium)
    registers = board.chip.registers
    assert registers[0x01] == 0x81  # LoRa, STDBY
    assert registers[0x1D] == 0x72  # BW 125 kHz (7), CR 4/5 (1), explicit header
    assert registers[0x1E] >> 4 == 9  # SF9
    assert registers[0x1E] & 0x04  # payload CRC on
    assert registers[0x26] & 0x08 == 0  # no LDRO at SF9 (4 ms symbols)
    assert registers[0x09] == 0xFF  # PA_BOOST, 17 dBm
    assert (registers[0x20], registers[0x21]) == (0, 8)
    assert registers[0x39] == 0x12
    # What the registers say is what the configuration asked, FRF quantisation aside.
    expected = replace(Modulation.from_config(radio.config), frequency_hz=470_299_988)
    assert board.chip.modulation == expected


def test_low_data_rate_optimise_is_set_for_sf11_at_125_khz(air):
    medium, board = air
    _radio(medium, RadioConfig(sf=11, max_payload=32))
    assert board.chip.registers[0x26] & 0x08
    assert board.chip.modulation.low_data_rate_optimize


# -- packets -------------------------------------------------------------------------------------


def test_transmit_puts_the_fifo_on_air_for_its_time_on_air(air):
    medium, board = air
    radio = _radio(medium)
    radio.transmit(READ_FORWARD_ACTIVE)
    (sent,) = medium.air_log
    assert sent.payload == READ_FORWARD_ACTIVE
    assert sent.end - sent.start == pytest.approx(CONFIG.time_on_air(len(READ_FORWARD_ACTIVE)))
    assert medium.clock.monotonic() >= sent.end  # returned after TxDone
    assert board.chip.registers[0x12] == 0  # flags cleared
    assert board.chip.registers[0x01] == 0x81  # back in STDBY


def _schedule_packet(medium, sender, payload, at, config=CONFIG):
    modulation = Modulation.from_config(config)
    medium.schedule(at, lambda: medium.transmit(sender, payload, modulation, start=at))


def test_receive_reads_payload_rssi_and_a_positive_snr(air):
    medium, board = air
    radio = _radio(medium)
    medium.set_link("peer", "concentrator", Link(rssi_dbm=-97.0, snr_db=7.25))
    _schedule_packet(medium, "peer", REPLY_1234_56_KWH, medium.clock.monotonic() + 0.01)
    packet = radio.receive(1.0)
    assert packet is not None
    assert packet.payload == REPLY_1234_56_KWH
    assert packet.snr_db == 7.25  # pyLoRa's get_pkt_snr_value() would say 56.75
    assert board.chip.registers[0x19] == 29
    assert packet.rssi_dbm == -97.0


def test_receive_reads_a_negative_snr_and_corrects_rssi(air):
    medium, _ = air
    radio = _radio(medium)
    medium.set_link("peer", "concentrator", Link(rssi_dbm=-121.0, snr_db=-9.5))
    _schedule_packet(medium, "peer", b"\x68weak", medium.clock.monotonic() + 0.01)
    packet = radio.receive(1.0)
    assert packet is not None
    assert packet.snr_db == -9.5
    # RegPktRssiValue holds whole dB: −121 dBm at −9.5 dB SNR comes back within half a dB.
    assert packet.rssi_dbm == pytest.approx(-121.0, abs=0.5)


def test_receive_gives_up_at_its_timeout(air):
    medium, board = air
    radio = _radio(medium)
    started = medium.clock.monotonic()
    assert radio.receive(0.25) is None
    assert medium.clock.monotonic() - started == pytest.approx(0.25)
    assert board.chip.registers[0x01] == 0x81


def test_a_packet_with_a_crc_error_is_dropped(air):
    medium, _ = air
    radio = _radio(medium)
    medium.set_link("noisy", "concentrator", Link(corruption=1.0))
    now = medium.clock.monotonic()
    _schedule_packet(medium, "noisy", b"garbled frame", now + 0.01)
    _schedule_packet(medium, "peer", REPLY_1234_56_KWH, now + 0.3)
    packet = radio.receive(1.0)
    assert packet is not None
    assert packet.payload == REPLY_1234_56_KWH
    assert radio.crc_errors == 1


def test_a_packet_that_began_before_rx_is_not_heard(air):
    medium, _ = air
    radio = _radio(medium)
    _schedule_packet(medium, "peer", REPLY_1234_56_KWH, medium.clock.monotonic() - 0.01)
    assert radio.receive(0.5) is None


# -- the radio bus through pyLoRa ------------------------------------------------------------------


def test_radio_bus_reads_a_meter_node(air):
    medium, _ = air
    bus = RadioBus(_radio(medium), clock=medium.clock)
    meter = _meter(medium)
    assert bus.run(read_energy(), address=ADDRESS) == REPLY_1234_56_KWH
    assert meter.heard == [READ_FORWARD_ACTIVE]
    assert meter.sent == [REPLY_1234_56_KWH]
    stats = bus.stats[ADDRESS]
    assert (stats.attempts, stats.successes, stats.timeouts) == (1, 1, 0)
    assert (stats.last_rssi_dbm, stats.last_snr_db) == (-97.0, 7.25)


def test_a_lost_request_is_retried_and_succeeds(air):
    medium, _ = air
    bus = RadioBus(_radio(medium), clock=medium.clock, retries=2)
    meter = _meter(medium)
    medium.drop_next(1, to="meter")
    assert bus.run(read_energy(), address=ADDRESS) == REPLY_1234_56_KWH
    stats = bus.stats[ADDRESS]
    assert (stats.attempts, stats.successes, stats.timeouts) == (2, 1, 1)
    assert len(_concentrator_sends(medium)) == 2
    assert len(meter.heard) == 1


def test_a_lost_reply_is_retried_and_succeeds(air):
    medium, _ = air
    bus = RadioBus(_radio(medium), clock=medium.clock, retries=2)
    meter = _meter(medium)
    medium.drop_next(1, to="concentrator")
    assert bus.run(read_energy(), address=ADDRESS) == REPLY_1234_56_KWH
    assert bus.stats[ADDRESS].timeouts == 1
    assert len(meter.sent) == 2


def test_random_loss_is_absorbed_by_retries(air):
    medium, _ = air
    medium.loss = 0.2
    bus = RadioBus(_radio(medium), clock=medium.clock, retries=5)
    _meter(medium)
    for _ in range(8):
        assert bus.run(read_energy(), address=ADDRESS) == REPLY_1234_56_KWH
    stats = bus.stats[ADDRESS]
    assert stats.successes == 8
    assert stats.timeouts == stats.attempts - 8 > 0
    assert medium.stats.lost > 0


def test_total_loss_raises_meter_timeout_naming_the_meter(air):
    medium, _ = air
    medium.loss = 1.0
    bus = RadioBus(_radio(medium), clock=medium.clock, retries=2)
    _meter(medium)
    started = medium.clock.monotonic()
    with pytest.raises(MeterTimeout, match=f"meter {ADDRESS}: no LoRa reply after 3 attempts"):
        bus.run(read_energy(), address=ADDRESS)
    timeout = bus.transaction_timeout(len(READ_FORWARD_ACTIVE), 0.5)
    assert medium.clock.monotonic() - started >= 3 * timeout
    stats = bus.stats[ADDRESS]
    assert (stats.attempts, stats.successes, stats.timeouts) == (3, 0, 3)


def test_listen_before_talk_backs_off_while_the_channel_is_busy(air):
    medium, _ = air
    bus = RadioBus(_radio(medium), clock=medium.clock)
    _meter(medium)
    jam = medium.occupy(CONFIG.frequency_hz, 0.6, rssi_dbm=-70.0)
    assert bus.run(read_energy(), address=ADDRESS) == REPLY_1234_56_KWH
    assert bus.stats[ADDRESS].backoffs >= 1
    (first_send,) = _concentrator_sends(medium)
    assert first_send.start >= jam.end


def test_listen_before_talk_gives_up_on_a_channel_that_stays_busy(air):
    medium, _ = air
    bus = RadioBus(_radio(medium), clock=medium.clock, retries=1, lbt_attempts=3)
    _meter(medium)
    medium.occupy(CONFIG.frequency_hz, 1000.0, rssi_dbm=-70.0)
    with pytest.raises(ChannelBusy, match=f"meter {ADDRESS}: channel .* busy") as busy:
        bus.run(read_energy(), address=ADDRESS)
    assert isinstance(busy.value, MeterTimeout)
    assert _concentrator_sends(medium) == []
    stats = bus.stats[ADDRESS]
    assert (stats.attempts, stats.channel_busy, stats.backoffs) == (2, 2, 6)


def test_cad_sees_a_weak_lora_preamble_but_not_a_packet_past_it(air):
    medium, board = air
    radio = _radio(medium)
    medium.set_link("neighbour", "concentrator", Link(rssi_dbm=-110.0))  # under -85 dBm
    neighbour = medium.transmit(
        "neighbour", bytes(100), Modulation.from_config(CONFIG), start=medium.clock.monotonic()
    )
    assert radio.channel_busy()  # CAD correlates on the preamble
    assert radio.last_channel_rssi_dbm == -110.0
    medium.clock.sleep(neighbour.preamble_end - medium.clock.monotonic() + 0.01)
    assert not radio.channel_busy()  # an SX127x CAD misses mid-packet; too weak for RSSI
    op_modes_written = {value for register, value in board.chip.register_writes if register == 1}
    assert 0x87 in op_modes_written  # the CAD really went through RegOpMode
