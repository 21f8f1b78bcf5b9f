"""Writing a meter's vendor malicious-load window (14) with credentials, against the simulated
meter's real frames: the worked frame, refusals by error bit, and any reply bytes."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demo.sim.dlt645_responder import Dlt645Responder
from edge.drivers.dlt645 import Frame, decode_frame, encode_frame
from edge.drivers.dlt645_items import ITEMS_BY_NAME, encode_value
from edge.drivers.dlt645_meter import DLT645_2007, check_write_reply, refusal
from edge.drivers.dlt645_requests import write_request
from edge.drivers.dlt645_vendor import (
    MALICIOUS_LOAD_MAPS,
    SIMULATED_MODEL,
    MaliciousLoadSettings,
    malicious_load_map,
)
from edge.drivers.errors import (
    DriverUsageError,
    FrameError,
    MeterError,
    MeterRefused,
    MeterUnauthorised,
)
from tests.edge.drivers.test_dlt645_meter import METER, Bus, meter_state

ROW = MALICIOUS_LOAD_MAPS[SIMULATED_MODEL]
HEATER = MaliciousLoadSettings(100.0, 300.0, 0.96, 0.99, 5)  # the operator's example

# Write 100.0 W to the power window's low end (04 F0 01 01), level 02, password 0, operator 0.
# Checked by hand: DI 01 01 F0 04, 02 000000, 00000000, 00 10 00 (BCD), each +33; CS AE.
WRITE_POWER_LOW = bytes.fromhex(
    "FE FE FE FE 68 12 90 78 56 34 12 68 14 0F 34 34 23 37 35 33 33 33 33 33 33 33 33 43 33 AE 16"
)
WRITE_OK = bytes.fromhex("68 12 90 78 56 34 12 68 94 00 1A 16")
WRITE_UNAUTHORISED = bytes.fromhex("68 12 90 78 56 34 12 68 D4 01 37 92 16")


def test_worked_write_frame_and_its_round_trip():
    frame = write_request(METER, ROW.power_low.di, encode_value(ROW.power_low, 1000))
    assert encode_frame(frame) == WRITE_POWER_LOW
    decoded = decode_frame(WRITE_POWER_LOW)
    assert decoded == frame
    assert decoded.data[:4] == bytes.fromhex("01 01 F0 04")  # DI0 first
    assert decoded.data[4:12] == bytes.fromhex("02 000000 00000000")
    assert decoded.data[12:] == bytes.fromhex("00 10 00")


@pytest.mark.parametrize(
    ("level", "password", "operator", "auth"),
    [
        (0x02, 0, 0, "02 000000 00000000"),
        (0x04, 0x123456, 0x87654321, "04 563412 21436587"),
    ],
)
def test_write_carries_the_configured_credentials(level, password, operator, auth):
    frame = write_request(
        METER, 0x04F00103, b"\x60\x09", password_level=level, password=password, operator=operator
    )
    assert decode_frame(encode_frame(frame)).data == bytes.fromhex(f"03 01 F0 04 {auth} 60 09")


def test_replies_decode_to_nothing_or_a_clear_error():
    ok = decode_frame(WRITE_OK)
    check_write_reply(ok, address=METER, item="x")  # L = 0: accepted
    with pytest.raises(FrameError):
        check_write_reply(Frame(METER, 0x94, b"\x00"), address=METER, item="x")
    error = decode_frame(WRITE_UNAUTHORISED)
    assert error.is_error and error.data == b"\x04"
    unauthorised = refusal(error.data[0], address=METER, item="x")
    assert isinstance(unauthorised, MeterUnauthorised)
    assert unauthorised.reasons == ("unauthorised",)
    other = refusal(0x02, address=METER, item="x")
    assert type(other) is MeterRefused and other.reasons == ("no_such_data",)


@pytest.mark.parametrize("deliver", ["whole", "bytewise", "noisy"])
def test_window_written_to_the_simulated_meter_and_read_back(deliver):
    state = meter_state()
    bus = Bus(Dlt645Responder(state).feed, deliver=deliver)
    bus.run(DLT645_2007.write_malicious_load(METER, ROW, HEATER))
    assert state.parameters == {
        "malicious_load_power_low": 1000,
        "malicious_load_power_high": 3000,
        "malicious_load_pf_low": 960,
        "malicious_load_pf_high": 990,
        "malicious_load_delay": 5,
    }
    assert len(bus.requests) == 5  # one write per parameter
    assert bus.run(DLT645_2007.read_item(METER, ROW.pf_low)) == [(ROW.pf_low, 960)]
    reading = bus.run(DLT645_2007.read_items(METER, (ROW.trips,)))
    assert reading.counters == (("malicious_load_trips", 2),)


def test_wrong_password_is_refused_and_changes_nothing():
    state = meter_state()
    meter = Dlt645Responder(state, password=0x123456)
    bus = Bus(meter.feed)
    with pytest.raises(MeterUnauthorised) as refused:
        bus.run(DLT645_2007.write_malicious_load(METER, ROW, HEATER))
    assert refused.value.item == "malicious_load_power_low"
    assert state.parameters == {}
    right = replace(DLT645_2007, password=0x123456, password_level=0x04, operator=0x42)
    bus.run(right.write_malicious_load(METER, ROW, HEATER))
    assert state.parameters["malicious_load_power_high"] == 3000


def test_a_meter_refuses_what_is_not_a_parameter():
    state = meter_state()
    bus = Bus(Dlt645Responder(state).feed)
    with pytest.raises(MeterRefused, match="other"):
        bus.run(DLT645_2007.write_item(METER, ROW.trips, 0))  # a counter is read, not written
    with pytest.raises(DriverUsageError):
        next(DLT645_2007.write_item(METER, ITEMS_BY_NAME["abnormal_trips_block"], 0))
    assert state.counters["malicious_load_trips"] == 2


def test_the_map_is_per_model_and_honest():
    assert malicious_load_map(None) is None
    assert malicious_load_map("DDZY1234") is None  # a model nobody documented: no writes
    for model, row in MALICIOUS_LOAD_MAPS.items():
        assert row.model == model and row.source
        assert all(item.vendor for item in (*row.parameters, row.trips))
        assert len({item.di for item in row.parameters}) == 5
    assert not ROW.documented and "no vendor document" in ROW.source
    assert ROW.registers(HEATER) == tuple(
        zip(ROW.parameters, (1000, 3000, 960, 990, 5), strict=True)
    )
    with pytest.raises(DriverUsageError):
        MaliciousLoadSettings(300.0, 100.0, 0.9, 1.0, 5)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60), st.booleans())
def test_a_write_takes_any_reply_bytes_then_succeeds_or_raises_our_error(data, framed):
    conversation = DLT645_2007.write_item(METER, ROW.delay, 5)
    tx = next(conversation)
    if framed:  # whatever the data, in a well-formed frame from this meter with a write's C
        control = data[0] | 0x80 if data else 0x94
        data = encode_frame(Frame(METER, (control & 0xE0) | 0x14, data[1:]))
    tx.feed(data)
    try:
        conversation.send(tx)
    except StopIteration:
        assert tx.reply is not None and not tx.reply.is_error and not tx.reply.data
    except MeterError:
        pass
