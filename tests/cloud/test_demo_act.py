"""`make demo`'s act 4 runs as a test too, so it cannot rot: the top-up through the API closes
the relay the concentrator tripped, and the cloud ends with the concentrator's chain."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.demo_act import act_cloud


def test_the_cloud_act_closes_a_tripped_relay_after_a_top_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    act_cloud(tmp_path)
    out = capsys.readouterr().out
    assert "is cut off for arrears" in out
    assert "the cloud marks it applied" in out
    assert "closed, confirmed by reading it back" in out
    assert "cloud: recharge posted" in out
    assert "identical head hash" in out
