"""How a notice leaves: the outcome of one send on any channel, and the text-message senders.

A sender answers every send with a `Sent`: delivered (with the provider's id), to be retried
later (the provider or the network failed for now), not subscribed (WeChat's 43101: the next
channel takes over), or refused for good (the provider will never take this message: a wrong
number, a template that does not exist). It never raises for what the provider or the network
did; a bug is still a bug.

Text messages go through an `SmsSender` (`send(phone, text)`): `HttpSmsSender` posts
`{"phone", "text"}` as JSON to a gateway (the loopback stand-in `cloud.notices.sms_standin`, or
an adapter in front of a real provider) and `FileSmsSender` appends them to a JSON-lines file
(the demo). Adapters for real SMS providers (Aliyun, Tencent Cloud) are not part of this.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

import httpx

TIMEOUT = httpx.Timeout(5.0, connect=3.0)  # a slow provider must not hold the sender up


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    NOT_SUBSCRIBED = "not_subscribed"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Sent:
    outcome: Outcome
    detail: str = ""  # the provider's words when it was not delivered
    provider_id: str | None = None


class SmsSender(Protocol):
    """Anything that sends a text message to a phone number."""

    def send(self, phone: str, text: str) -> Sent: ...


class HttpSmsSender:
    """A gateway on HTTP: `POST url {"phone", "text"}` → 2xx `{"id": …}`; 4xx refuses the
    message for good, 5xx and network trouble are tried again later."""

    def __init__(self, url: str, client: httpx.Client | None = None) -> None:
        self.url = url
        self.client = client or httpx.Client(timeout=TIMEOUT)

    def send(self, phone: str, text: str) -> Sent:
        try:
            answer = self.client.post(self.url, json={"phone": phone, "text": text})
        except httpx.HTTPError as exc:
            return Sent(Outcome.RETRY, f"SMS gateway unreachable: {type(exc).__name__}: {exc}")
        if answer.status_code >= 500 or answer.status_code == 429:
            return Sent(Outcome.RETRY, f"SMS gateway answered {answer.status_code}")
        if answer.status_code >= 400:
            return Sent(Outcome.REFUSED, f"SMS gateway refused: {answer.status_code} "
                        f"{answer.text[:200]}")  # fmt: skip
        try:
            body = answer.json()
        except ValueError:
            body = None
        message_id = body.get("id") if isinstance(body, dict) else None
        return Sent(Outcome.DELIVERED, provider_id=str(message_id)[:64] if message_id else None)

    def close(self) -> None:
        self.client.close()


class FileSmsSender:
    """Appends each message as a JSON line `{"time", "phone", "text"}` (the demo's phone)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def send(self, phone: str, text: str) -> Sent:
        line = json.dumps({"time": dt.datetime.now(dt.UTC).isoformat(), "phone": phone,
                           "text": text}, ensure_ascii=False)  # fmt: skip
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as file:
                    file.write(line + "\n")
        except OSError as exc:
            return Sent(Outcome.RETRY, f"cannot write {self.path}: {exc.strerror}")
        return Sent(Outcome.DELIVERED)
