"""Report and statement PDFs through the API in Chinese words or in English (`lang`), on the
site fixture's opening uploaded by the real ingest; text extracted with pypdf."""

from __future__ import annotations

import io

from fastapi.testclient import TestClient
from pypdf import PdfReader

from tests.cloud.api.conftest import Site

NOV = {"from": "2026-11-01", "to": "2026-11-30"}


def printed(client: TestClient, path: str, **params: str) -> str:
    answer = client.get(path, params={"format": "pdf", **params})
    assert answer.status_code == 200, answer.text
    return "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(answer.content)).pages)


def test_statement_in_words_and_in_english(client: TestClient, site: Site) -> None:
    chinese = printed(client, "/statements/A0001", month="2026-11")
    assert "期初余额" in chinese and "补贴使用 -1.200" in chinese and "电量(kWh)" in chinese
    assert "2026-11-24 16:00 充值 DESK-0001 100.00" in chinese  # the item's code, in words
    assert "recharge" not in chinese and "prepaid" not in chinese
    english = printed(client, "/statements/A0001", month="2026-11", lang="en")
    for words in ("Monthly statement", "Opening balance", "Closing balance", "Energy (kWh)",
                  "2026-11-24 16:00 Recharge DESK-0001 100.00", "Page 1 of 1"):  # fmt: skip
        assert words in english, words


def test_reports_take_a_language(client: TestClient, site: Site) -> None:
    english = printed(client, "/reports/consumption", group="account", lang="en", **NOV)
    assert "Consumption" in english and "Energy (kWh)" in english and "Total" in english
    assert (
        client.get("/reports/consumption", params={"format": "pdf", "lang": "fr"}).status_code
        == 422
    )
    assert client.get("/reports/deposits", params={"lang": "fr"}).status_code == 422
