"""node.pub, the node key's public half beside it (`edge.site.node_pub`): any bytes in it are
the key or our error naming the file; written atomically, 0644, and only when it changes."""

from __future__ import annotations

import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demo.site import write_demo_site
from edge.site import load_site
from edge.site.errors import SiteConfigError
from edge.site.node_pub import VerifyingKey, public_path, publish, read_public, write_public
from ledger.chain import NodeKey, public_key_pem

KEY = NodeKey.from_seed(bytes(range(32)))


def test_the_public_file_sits_beside_the_key() -> None:
    assert public_path(Path("/etc/voltbook/node.key")) == Path("/etc/voltbook/node.pub")
    assert public_path(Path("keys/edge-7.key")) == Path("keys/edge-7.pub")
    assert public_path(Path("keys/nodekey")) == Path("keys/nodekey.pub")
    assert public_path(Path("keys/node.pem")) == Path("keys/node.pem.pub")


def test_written_0644_read_back_and_rewritten_only_when_it_changes(tmp_path: Path) -> None:
    key = tmp_path / "node.key"
    assert read_public(key) is None  # none yet: the caller falls back to the private key
    assert publish(key, KEY.public_key) is True
    assert stat.S_IMODE((tmp_path / "node.pub").stat().st_mode) == 0o644
    assert (tmp_path / "node.pub").read_bytes() == public_key_pem(KEY.public_key)
    assert read_public(key) == KEY.public_key
    assert publish(key, KEY.public_key) is False
    other = NodeKey.generate().public_key
    assert publish(key, other) is True and read_public(key) == other
    (tmp_path / "node.pub").write_bytes(b"garbage")
    assert publish(key, KEY.public_key) is True and read_public(key) == KEY.public_key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.pub"]  # no temporary left


def test_hex_form_is_read_too(tmp_path: Path) -> None:
    (tmp_path / "node.pub").write_text(KEY.public_key.public_bytes_raw().hex() + "\n")
    assert read_public(tmp_path / "node.key") == KEY.public_key


@settings(max_examples=300, deadline=None)
@given(
    raw=st.binary(max_size=300)
    | st.just(public_key_pem(KEY.public_key))
    | st.binary(max_size=60).map(lambda b: public_key_pem(KEY.public_key)[:50] + b)
    | st.text("0123456789abcdef", min_size=60, max_size=70).map(str.encode)
)
def test_any_bytes_are_the_key_or_our_error(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        key = Path(folder) / "node.key"
        (Path(folder) / "node.pub").write_bytes(raw)
        try:
            found = read_public(key)
        except SiteConfigError as exc:
            assert "node.pub" in str(exc)
            return
        assert found is not None
        assert public_key_pem(found).strip() and found.public_bytes_raw()


def test_a_file_far_too_large_is_refused_unread(tmp_path: Path) -> None:
    write_public(tmp_path / "node.key", KEY.public_key)
    with (tmp_path / "node.pub").open("ab") as out:
        out.write(b"\n" * 10_000)
    with pytest.raises(SiteConfigError, match="over 4096 bytes"):
        read_public(tmp_path / "node.key")


def test_a_signature_problem_names_node_pub_and_other_problems_do_not(tmp_path: Path) -> None:
    from_file = VerifyingKey(KEY.public_key, tmp_path / "node.pub")
    signed = "checkpoint signed by unknown key 0123456789abcdef"
    assert from_file.explain(signed).startswith(signed)
    assert f"checked with the key in {tmp_path / 'node.pub'}, {KEY.key_id}" in from_file.explain(
        signed
    )
    invariant = "invariant violated: balances do not sum to zero"
    assert from_file.explain(invariant) == invariant  # not node.pub's doing
    assert VerifyingKey(KEY.public_key).explain(signed) == signed  # the private key's: no file


@pytest.mark.parametrize(("node_key", "refused"), [("cloud.key", True), ("node.key", False)])
def test_a_node_key_whose_public_file_is_the_clouds_key_file_is_refused(
    tmp_path: Path, node_key: str, refused: bool
) -> None:
    """`node_key = "cloud.key"` would have the runtime write the node's public key over
    `cloud.pub`, where the box reads the cloud's: the site is refused at load, in words."""
    made = write_demo_site(tmp_path / "site", 1)
    (made.directory / "cloud.pub").write_bytes(public_key_pem(NodeKey.generate().public_key))
    text = made.site_toml.read_text().replace('node_key = "node.key"', f'node_key = "{node_key}"')
    text += '\n[cloud]\nhost = "127.0.0.1"\ncloud_public_key = "./cloud.pub"\n'
    made.site_toml.write_text(text)
    if node_key != "node.key":
        (made.directory / "node.key").rename(made.directory / node_key)
    if refused:
        with pytest.raises(SiteConfigError, match=r"node_key.*cloud\.pub.*not the cloud's"):
            load_site(made.site_toml)
    else:
        assert load_site(made.site_toml).settings.node_key.name == "node.key"
