"""Notices planned from the database and sent to the stand-ins over loopback HTTP, on every
backend: each made once and sent once (a loop run twice, two loops racing, a sender dying),
43101 handed to SMS, 45009 and failures retried with backoff until a final, visible state."""

from __future__ import annotations

import datetime as dt
import threading

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.config import NoticesSettings
from cloud.db.models import Alarm, Recharge
from cloud.db.notices import Notice, NoticeDelivery
from cloud.db.operations import Refund
from cloud.db.rollups import ConsumptionDaily
from cloud.notices import outbox
from cloud.notices.service import NoticeLoop, NoticeService
from cloud.notices.sms_standin import SmsStandin
from cloud.notices.wechat_oa_standin import OaStandin
from tests.cloud.conftest import Clock
from tests.cloud.notices.conftest import MORNING, TEMPLATES, World, channels_for, set_prepaid


def notices(sessions: sessionmaker[Session]) -> dict[str, tuple[str, list[tuple[str, ...]]]]:
    """dedupe → (state, [(channel, state, attempts), …])"""
    with sessions() as session:
        found = {}
        for notice in session.scalars(select(Notice).order_by(Notice.id)):
            deliveries = session.scalars(
                select(NoticeDelivery)
                .where(NoticeDelivery.notice_id == notice.id)
                .order_by(NoticeDelivery.next_attempt, NoticeDelivery.channel.desc())
            )
            found[notice.dedupe] = (notice.state, [(d.channel, d.state, str(d.attempts))
                                                   for d in deliveries])  # fmt: skip
        return found


def deliveries(sessions: sessionmaker[Session], channel: str) -> list[NoticeDelivery]:
    with sessions() as session:
        return list(
            session.scalars(select(NoticeDelivery).where(NoticeDelivery.channel == channel))
        )


def recharge(session: Session, payment: str, account: str, fen: int, when: dt.datetime) -> None:
    session.add(Recharge(payment=payment, account=account, fen=fen, method="wechat",
                         operator="op-li", status="posted", pending_transfer="00" * 16,
                         command_id=None, created=when, posted=when, voided=None,
                         reason=""))  # fmt: skip


def test_low_balance_goes_by_wechat_or_sms_once(  # noqa: PLR0917 (fixtures)
    world: World, sessions: sessionmaker[Session], service: NoticeService, oa: OaStandin,
    sms: SmsStandin, clock: Clock,
) -> None:  # fmt: skip
    with sessions.begin() as session:
        set_prepaid(session, "A1", 1000)  # below the site's 20.00 yuan
        set_prepaid(session, "A2", 1500)
        set_prepaid(session, "A3", 50_000)  # plenty
        set_prepaid(session, "A4", 2500)  # above 20.00 yuan, but 2 days at 10.00 a day
        for day in range(1, 8):
            session.add(ConsumptionDaily(account="A4", meter="m4", day=dt.date(2026, 12, day),
                                         period="", pocket="prepaid", wh=1000, fen=1000,
                                         entries=1))  # fmt: skip
    service.run_once()
    assert notices(sessions) == {
        "low_balance:A1:2026-12-07": ("sent", [("wechat", "sent", "1")]),
        "low_balance:A2:2026-12-07": ("sent", [("sms", "sent", "1")]),
        "low_balance:A4:2026-12-07": ("sent", [("wechat", "sent", "1")]),
    }
    assert (
        sorted((m.touser, m.template_id) for m in oa.messages)
        == [("oWang", TEMPLATES["low_balance"])] * 2
    )
    by_shop = {m.data["thing1"]["value"]: m.data for m in oa.messages}
    assert by_shop["商铺S4（A4）"]["thing3"]["value"] == "可用约2天，请及时充值"
    assert by_shop["商铺S1（A1）"]["amount2"]["value"] == "10.00元"
    assert oa.messages[0].url == "https://pay.example/m/"
    assert [(phone, "15.00元" in text) for phone, text in sms.messages] == [("13900000002", True)]
    clock.advance(hours=1)
    service.run_once()  # the same day again: nothing new, nothing sent twice
    assert len(oa.messages) == 2 and len(sms.messages) == 1
    assert [
        d.provider_id is not None and d.sent == MORNING for d in deliveries(sessions, "wechat")
    ] == [True, True]


def test_not_subscribed_falls_back_to_sms_or_fails(
    world: World, sessions: sessionmaker[Session], service: NoticeService, oa: OaStandin,
    sms: SmsStandin,
) -> None:  # fmt: skip
    oa.unsubscribed |= {"oWang", "oSun"}
    with sessions.begin() as session:
        recharge(session, "PAY-1", "A1", 5000, MORNING)
        recharge(session, "PAY-3", "A3", 8000, MORNING)  # Sun has no phone
    service.run_once()
    assert notices(sessions) == {
        "recharge_credited:PAY-1": ("sent", [("wechat", "fallback", "1"), ("sms", "sent", "1")]),
        "recharge_credited:PAY-3": ("failed", [("wechat", "failed", "1")]),
    }
    assert oa.messages == []
    assert len(sms.messages) == 1 and "商铺S1（A1）充值50.00元已到账" in sms.messages[0][1]
    assert "43101" in deliveries(sessions, "wechat")[0].last_error


def test_rate_limited_is_sent_after_the_backoff(
    world: World, sessions: sessionmaker[Session], service: NoticeService, oa: OaStandin,
    clock: Clock,
) -> None:  # fmt: skip
    oa.rate_limit_next(1)
    with sessions.begin() as session:
        recharge(session, "PAY-1", "A1", 5000, MORNING)
    service.run_once()
    (pending,) = deliveries(sessions, "wechat")
    assert (pending.state, pending.attempts) == ("pending", 1)
    assert pending.next_attempt == MORNING + outbox.BACKOFF[0]
    assert "45009" in pending.last_error
    clock.advance(seconds=29)
    service.run_once()  # not due yet
    assert oa.messages == []
    clock.advance(seconds=1)
    service.run_once()
    assert notices(sessions)["recharge_credited:PAY-1"] == ("sent", [("wechat", "sent", "2")])
    assert len(oa.messages) == 1


def test_failures_back_off_until_the_channel_gives_up(
    world: World, sessions: sessionmaker[Session], service: NoticeService, sms: SmsStandin,
    clock: Clock,
) -> None:  # fmt: skip
    sms.fail_next(100)
    with sessions.begin() as session:
        recharge(session, "PAY-2", "A2", 5000, MORNING)  # Zhao: SMS only
    waits = []
    for attempt in range(1, outbox.MAX_ATTEMPTS + 1):
        service.run_once()
        (row,) = deliveries(sessions, "sms")
        assert row.attempts == attempt
        if row.state == "pending":
            waits.append(row.next_attempt - clock.now)
            clock.now = row.next_attempt
    assert waits == list(outbox.BACKOFF)
    assert (row.state, row.last_error) == ("failed", "SMS gateway answered 503")
    assert notices(sessions)["recharge_credited:PAY-2"][0] == "failed"
    clock.advance(days=1)
    service.run_once()  # a final state stays final
    assert sms.messages == [] and deliveries(sessions, "sms")[0].attempts == outbox.MAX_ATTEMPTS


def test_cut_off_from_the_concentrators_alarm_and_an_unknown_account(
    world: World, sessions: sessionmaker[Session], service: NoticeService, sms: SmsStandin,
) -> None:  # fmt: skip
    with sessions.begin() as session:
        session.add(Alarm(node="edge-0001", event_id=7, kind="arrears_trip", severity="warning",
                          meter="m2", shop="S2", account="A2", detail="balance exhausted",
                          facts={}, time=MORNING, cleared=False, note=""))  # fmt: skip
        session.add(Alarm(node="edge-0001", event_id=8, kind="arrears_trip", severity="warning",
                          meter="m2", shop="S2", account="A2", detail="old", facts={},
                          time=MORNING - dt.timedelta(days=2), cleared=False, note=""))  # fmt: skip
        recharge(session, "PAY-X", "Z9", 100, MORNING)  # an account the registry does not know
    service.run_once()
    assert notices(sessions) == {
        "cut_off:edge-0001:7": ("sent", [("sms", "sent", "1")]),
        "recharge_credited:PAY-X": ("unreachable", []),
    }
    assert sms.messages == [("13900000002", "【Voltbook】商铺S2（A2）因欠费于2026-12-07 09:30停电，"
                                            "充值到账后自动恢复供电。")]  # fmt: skip


def test_two_loops_racing_send_each_notice_once(
    world: World, sessions: sessionmaker[Session], oa: OaStandin, sms: SmsStandin, clock: Clock
) -> None:
    with sessions.begin() as session:
        for number in range(24):
            recharge(session, f"PAY-{number}", ("A1", "A2", "A4")[number % 3], 100 + number,
                     MORNING)  # fmt: skip
    services = [NoticeService(sessions, NoticesSettings(), channels_for(oa, sms), clock,
                              batch=5) for _ in range(2)]  # fmt: skip
    start = threading.Barrier(2)

    def rounds(service: NoticeService) -> None:
        start.wait()
        for _ in range(8):
            service.run_once()

    threads = [threading.Thread(target=rounds, args=(s,)) for s in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for service in services:
        service.channels.close()
    found = notices(sessions)
    assert len(found) == 24 and {state for state, _ in found.values()} == {"sent"}
    sent = [m.data["character_string3"]["value"] for m in oa.messages] + [
        text.split("单号")[1].rstrip("）。") for _, text in sms.messages
    ]
    assert sorted(sent) == sorted(f"PAY-{n}" for n in range(24))  # each once


def test_a_sender_that_died_mid_send_is_taken_over_after_its_lease(
    world: World, sessions: sessionmaker[Session], service: NoticeService, oa: OaStandin,
    clock: Clock,
) -> None:  # fmt: skip
    with sessions.begin() as session:
        recharge(session, "PAY-1", "A1", 5000, MORNING)
    service.plan()
    service.route_new()
    with sessions.begin() as session:
        (claimed,) = outbox.claim_due(session, clock())  # and then it died
    service.send_due()
    assert oa.messages == []  # still held
    clock.advance(seconds=outbox.LEASE.total_seconds() + 1)
    service.send_due()
    assert len(oa.messages) == 1
    with sessions.begin() as session:  # the dead sender's late settling changes nothing
        assert not outbox.settle(session, claimed, outbox.DeliveryEvent.GIVE_UP, clock())
    assert notices(sessions)["recharge_credited:PAY-1"] == ("sent", [("wechat", "sent", "2")])


def test_the_loop_survives_an_unreachable_provider_and_stops(
    world: World, sessions: sessionmaker[Session], oa: OaStandin, clock: Clock
) -> None:
    channels = channels_for(oa, None)
    oa.stop()  # nobody answers
    with sessions.begin() as session:
        recharge(session, "PAY-1", "A1", 5000, MORNING)
    loop = NoticeLoop(NoticeService(sessions, NoticesSettings(), channels, clock), every=0.05)
    loop.start()
    threading.Event().wait(0.3)
    loop.stop()
    channels.close()
    (row,) = deliveries(sessions, "wechat")
    assert row.state == "pending" and row.attempts == 1
    assert "no access token" in row.last_error


def test_a_refund_paid_is_told_once(
    world: World, sessions: sessionmaker[Session], service: NoticeService, oa: OaStandin,
    clock: Clock,
) -> None:  # fmt: skip
    with sessions.begin() as session:
        for number, status in ((1, "paid"), (2, "reserved")):
            session.add(Refund(id=f"R-{number}", account="A1", node="edge-0001", shop="S1",
                               method="cash", grace_wh=0, grace_until=MORNING, status=status,
                               fen=4321, pending_transfer="00" * 16, settle_transfer=None,
                               payout_transfer=None, sources=[], command_id="c" * 32,
                               settle_command_id=None, operator="op-li", paid_by="fin",
                               receipt=None, created=MORNING, reserved=MORNING,
                               closed=MORNING if status == "paid" else None,
                               settled=None))  # fmt: skip
    service.run_once()
    clock.advance(minutes=10)
    service.run_once()
    assert notices(sessions) == {"refund_paid:R-1": ("sent", [("wechat", "sent", "1")])}
    (message,) = oa.messages
    assert message.data["amount2"]["value"] == "43.21元"
    assert message.data["character_string3"]["value"] == "R-1"


def test_arrears_are_warned_before_the_sites_cut_off(
    world: World, sessions: sessionmaker[Session], service: NoticeService, sms: SmsStandin,
    clock: Clock,
) -> None:  # fmt: skip
    with sessions.begin() as session:
        set_prepaid(session, "A1", 10_000)
        set_prepaid(session, "A2", -100)  # owes: cut at 10:00 Shanghai, warned from 08:00
    clock.now = MORNING - dt.timedelta(hours=2)  # 07:30 there
    service.run_once()
    assert notices(sessions) == {}
    clock.now = MORNING  # 09:30 there
    service.run_once()
    assert notices(sessions) == {"arrears_warning:A2:2026-12-07": ("sent", [("sms", "sent", "1")])}
    assert sms.messages == [("13900000002", "【Voltbook】商铺S2（A2）已欠费（余额-1.00元），"
                                            "将于2026-12-07 10:00停电，请尽快充值。")]  # fmt: skip
