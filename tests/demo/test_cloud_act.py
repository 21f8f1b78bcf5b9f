"""`make demo`'s acts 4 and 5 run as a test too, so it cannot rot: the top-up through the API closes
the relay the concentrator tripped, and the cloud ends with the concentrator's chain."""

from __future__ import annotations

from pathlib import Path

import pytest

from demo.cloud_act import act_cloud

pytestmark = pytest.mark.slow  # `make demo`'s acts 4 and 5: the cloud, its broker, a concentrator


def test_the_cloud_act_closes_a_tripped_relay_after_a_top_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    act_cloud(tmp_path)
    out = capsys.readouterr().out
    assert "is cut off for arrears" in out
    assert "the cloud marks it applied" in out
    assert "closed, confirmed by reading it back" in out
    # act 5: a correction, a meter swap and a refund, each settled through the concentrator
    assert "the cloud posted its pending transfer (posted)" in out
    assert "the concentrator polls 209901000001 now" in out
    assert "finance paid it out in cash" in out and "→ paid" in out
    assert out.count("收据编号: 2026-") == 4  # the top-up, correction, swap and refund receipts
    assert "cloud: recharge posted" in out
    assert "identical head hash" in out
    assert "op-demo logged in" in out
    assert "operator log:" in out and "hash chain intact" in out
