"""Notifications as the providers send them: a POST to the merchant's notify_url, and again on
the provider's schedule until the merchant answers that it took it.

    WeChat Pay   accepted: HTTP 200 or 204; waits 15s 15s 30s 3m 10m 20m 30m 30m 30m 60m 3h 3h
                 3h 6h 6h (about a day), then gives up
    Alipay       accepted: the body `success`; waits about 4m 10m 10m 1h 2h 6h 15h

Each attempt is built anew (`Notice.build`): WeChat Pay signs every attempt with a fresh
timestamp, so a retry a day later still verifies. Waits are multiplied by the knobs'
`time_scale`; `duplicates` sends extra copies at once; `drop` sends nothing. One thread sends,
in due order; `stop()` ends it (pending notices are forgotten, as a restarted provider would
not, but a sandbox may).
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from cloud.payments.sandbox.state import Attempt, SandboxState

log = logging.getLogger(__name__)

WECHAT_RETRY_S = (15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600,
                  10800, 10800, 10800, 21600, 21600)  # fmt: skip
ALIPAY_RETRY_S = (240, 600, 600, 3600, 7200, 21600, 54000)
SEND_TIMEOUT_S = 5.0  # both providers want an answer within 5 s


def wechat_accepted(answer: httpx.Response) -> bool:
    return answer.status_code in (200, 204)


def alipay_accepted(answer: httpx.Response) -> bool:
    return answer.status_code == 200 and answer.content.strip() == b"success"


@dataclass(frozen=True)
class Notice:
    """One notification to deliver: where, how it is built for each attempt, how the provider
    tells it was taken, and how long it waits between attempts."""

    provider: str
    out_trade_no: str
    kind: str  # transaction, refund
    url: str
    build: Callable[[], tuple[bytes, dict[str, str]]]  # body and headers, made per attempt
    accepted: Callable[[httpx.Response], bool]
    retry_s: tuple[int, ...]


class Notifier:
    def __init__(self, state: SandboxState, now: Callable[[], dt.datetime]) -> None:
        self.state = state
        self.now = now
        self._queue: list[tuple[float, int, int, Notice]] = []  # due, order, attempt, notice
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._stopped = False
        self._http = httpx.Client(timeout=SEND_TIMEOUT_S)
        self._thread = threading.Thread(target=self._run, name="sandbox-notifier", daemon=True)
        self._thread.start()

    def send(self, notice: Notice) -> None:
        """Deliver `notice` (and the knobs' duplicates), after the knobs' delay."""
        knobs = self.state.knobs
        if knobs.drop:
            self._record(notice, 0, None, "dropped", accepted=False)
            return
        due = self._clock() + knobs.delay_s * knobs.time_scale
        with self._wake:
            for _ in range(1 + max(0, knobs.duplicates)):
                heapq.heappush(self._queue, (due, next(self._order), 0, notice))
            self._wake.notify()

    def send_now(self, notice: Notice) -> bool:
        """One attempt on the caller's thread (retries, if any, go on the notifier's): the
        notice that overtakes an order's answer. Whether it was taken."""
        return self._attempt(notice, 0)

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self._thread.join(SEND_TIMEOUT_S + 1)
        self._http.close()

    def pending(self) -> int:
        with self._wake:
            return len(self._queue)

    def _clock(self) -> float:
        return time.monotonic()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopped and (not self._queue or self._queue[0][0] > self._clock()):
                    timeout = None if not self._queue else self._queue[0][0] - self._clock()
                    self._wake.wait(timeout)
                if self._stopped:
                    return
                _, _, number, notice = heapq.heappop(self._queue)
            self._attempt(notice, number)

    def _attempt(self, notice: Notice, number: int) -> bool:
        body, headers = notice.build()
        try:
            answer = self._http.post(notice.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            status, text, taken = None, f"no answer: {exc}", False
        else:
            status, text, taken = answer.status_code, answer.text[:200], notice.accepted(answer)
        self._record(notice, number, status, text, accepted=taken)
        if not taken and number < len(notice.retry_s):
            wait = notice.retry_s[number] * self.state.knobs.time_scale
            with self._wake:
                heapq.heappush(
                    self._queue, (self._clock() + wait, next(self._order), number + 1, notice)
                )
                self._wake.notify()
        elif not taken:
            log.warning("%s notice for %s given up after %d attempts", notice.provider,
                        notice.out_trade_no, number + 1)  # fmt: skip
        return taken

    def _record(
        self, notice: Notice, number: int, status: int | None, answer: str, *, accepted: bool
    ) -> None:
        attempt = Attempt(notice.provider, notice.out_trade_no, notice.kind, number, self.now(),
                          status, answer, accepted)  # fmt: skip
        with self.state.lock:
            self.state.attempts.append(attempt)
