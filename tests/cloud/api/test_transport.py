"""`cloud.api.transport.forwarded_https`: only a configured proxy's own (right-most)
`X-Forwarded-Proto` says a request came over TLS."""

from __future__ import annotations

import pytest

from cloud.api.guards import networks
from cloud.api.transport import forwarded_https

PROXIES = networks(["127.0.0.1", "10.0.0.0/8", "::1"])


@pytest.mark.parametrize(
    ("peer", "values", "https"),
    [
        ("127.0.0.1", [b"https"], True),
        ("10.1.2.3", [b"HTTPS"], True),
        ("::1", [b"https"], True),
        ("127.0.0.1", [b"http, https"], True),  # the proxy appended its own hop
        ("127.0.0.1", [b"https, http"], False),  # a client's claim before the proxy's truth
        ("127.0.0.1", [b"https", b"http"], False),  # two headers: the last one counts
        ("127.0.0.1", [], False),
        ("127.0.0.1", [b""], False),
        ("192.0.2.7", [b"https"], False),  # not a proxy of ours
        ("not an address", [b"https"], False),
        (None, [b"https"], False),
    ],
)
def test_only_a_trusted_proxys_own_hop_counts(
    peer: str | None, values: list[bytes], https: bool
) -> None:
    headers = [(b"x-forwarded-proto", value) for value in values] + [(b"host", b"vb")]
    assert forwarded_https(peer, headers, PROXIES) is https


def test_without_proxies_nothing_is_believed() -> None:
    assert not forwarded_https("127.0.0.1", [(b"x-forwarded-proto", b"https")], ())
