"""Boot from a signed balance snapshot, prune what the cloud acknowledged (issue 18, item 3).

The boot replays only what follows the newest snapshot that checks; a snapshot that does not
check sends it back to the full replay; a pruned store starts at its signed anchor, refuses to
open without the key that checks it, and shrinks its file. The property: for any interleaving
of bookings, acknowledgements, snapshots, prunes and reopenings, the balances after a boot from
the snapshot equal those of a full replay of the cloud's copy (every entry ever appended).
"""

from __future__ import annotations

import datetime as dt
import itertools
import sqlite3
import uuid
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.store import CorruptStore, Store, StoreUsageError
from edge.store.snapshots import unpack
from ledger.accounts import Pocket, System, pocket_id, system_id
from ledger.book import Balance, replay
from ledger.chain import NodeKey
from ledger.snapshot import BalanceSnapshot, decode_snapshot
from ledger.transfers import Code, Kind, Transfer
from ledger.verify import TrustedHead, verify_lines
from tests.edge.store.conftest import CASH, NODE, reading, recharge
from tests.edge.store.test_integrity import KEY
from tests.ledger.factories import transfer

OTHER = NodeKey.from_seed(bytes(range(1, 33)))
SALES = system_id(System.ENERGY_SALES)
REFUNDS = system_id(System.REFUNDS_PAYABLE)
FAR = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)  # every entry is older than this


def _sign_snapshot(store: Store, key: NodeKey = KEY) -> BalanceSnapshot:
    snapshot = store.balance_snapshot()
    with store.transaction() as tx:
        tx.add_snapshot(snapshot.sign(key))
    return snapshot


def _sync(store: Store) -> None:
    """What a verified cloud acknowledgement of everything does: ack the head, empty the
    outbox."""
    with store.transaction() as tx:
        tx.acknowledge(store.chain.seq, store.chain.head)
        tx.prune_outbox(2**62)


def _prune(store: Store) -> int:
    seq = store.prunable_seq(FAR)
    if seq <= store.anchor()[0]:
        return 0
    with store.transaction() as tx:
        return tx.prune_chain(store.snapshot_at(seq).sign(KEY))


@pytest.fixture
def booked(db_path: Path) -> Path:
    """12 recharges, a snapshot after the 8th."""
    with Store.open(db_path, node=NODE, public_key=KEY.public_key) as store:
        with store.transaction() as tx:
            tx.append_transfers([recharge(i, amount=100 + i) for i in range(8)])
        _sign_snapshot(store)
        with store.transaction() as tx:
            tx.append_transfers([recharge(i, amount=100 + i) for i in range(8, 12)])
    return db_path


def _balances(path: Path, **kwargs: object) -> dict[str, object]:
    with Store.open(path, public_key=KEY.public_key, **kwargs) as store:  # type: ignore[arg-type]
        return dict(store.book.balances())


def test_boot_replays_only_what_follows_the_snapshot(booked: Path) -> None:
    with Store.open(booked, public_key=KEY.public_key) as store:
        assert store.boot_start == 8
        assert store.chain.seq == 12
        fast = dict(store.book.balances())
    with Store.open(booked, public_key=KEY.public_key, full_check=True) as store:
        assert store.boot_start == 0
        assert dict(store.book.balances()) == fast
    assert fast[pocket_id("A0001", Pocket.PREPAID)].posted == sum(100 + i for i in range(12))


def test_without_the_key_the_boot_replays_everything(booked: Path) -> None:
    with Store.open(booked) as store:
        assert store.boot_start == 0
        assert store.chain.seq == 12


def _rewrite_snapshot(path: Path, edit: object) -> None:
    conn = sqlite3.connect(path)
    with conn:
        seq, body = conn.execute("SELECT seq, body FROM snapshots").fetchone()
        text = unpack(bytes(body))
        if edit == "balance":
            edited = text.replace(b",828]", b",928]", 1)  # A0001:prepaid's credits posted
            assert edited != text
            text = edited
            conn.execute("UPDATE snapshots SET body = ?", (zlib.compress(text),))
        elif edit == "signature":
            conn.execute("UPDATE snapshots SET signature = ?", (bytes(64),))
        elif edit == "other key":
            signed = decode_snapshot(text).sign(OTHER)
            conn.execute(
                "UPDATE snapshots SET body = ?, key_id = ?, signature = ?",
                (zlib.compress(signed.body), signed.key_id, signed.signature),
            )
        elif edit == "garbage":
            conn.execute("UPDATE snapshots SET body = ?", (b"\x78\x9c not zlib",))
        elif edit == "seq":
            conn.execute("UPDATE snapshots SET seq = ?", (seq + 1,))
    conn.close()


@pytest.mark.parametrize("edit", ["balance", "signature", "other key", "garbage", "seq"])
def test_a_snapshot_that_does_not_check_falls_back_to_the_full_replay(
    booked: Path, edit: str, caplog: pytest.LogCaptureFixture
) -> None:
    expected = _balances(booked, full_check=True)
    _rewrite_snapshot(booked, edit)
    with Store.open(booked, public_key=KEY.public_key) as store:
        assert store.boot_start == 0
        assert dict(store.book.balances()) == expected
    assert "balance snapshot" in caplog.text


def test_a_snapshot_signed_over_wrong_balances_is_found_by_the_full_check(db_path: Path) -> None:
    with Store.open(db_path, node=NODE, public_key=KEY.public_key) as store:
        with store.transaction() as tx:
            tx.append_transfers([recharge(1), recharge(2)])
        right = store.balance_snapshot()
        wrong_rows = tuple(
            (a, dp, dpost, cp, cpost + (1 if a.endswith("prepaid") else 0))
            for a, dp, dpost, cp, cpost in right.state.balances
        )
        state = type(right.state)(wrong_rows, (), (), right.state.count)
        forged = BalanceSnapshot(NODE, right.seq, right.head, state).sign(KEY)
        with store.transaction() as tx:
            tx.add_snapshot(forged)
        with store.transaction() as tx:
            tx.append_transfers([recharge(3)])
    with pytest.raises(CorruptStore, match="snapshot differs from the replayed balances"):
        Store.open(db_path, public_key=KEY.public_key, full_check=True)


def test_pruning_keeps_the_chain_verifiable_from_the_anchor(booked: Path) -> None:
    with Store.open(booked, public_key=KEY.public_key) as store:
        anchor = store.snapshot_at(10).sign(KEY)
        with pytest.raises(StoreUsageError, match="acknowledged"), store.transaction() as tx:
            tx.prune_chain(anchor)
        with store.transaction() as tx:
            tx.acknowledge(10, store.entry(10).hash)  # type: ignore[union-attr]
        with pytest.raises(StoreUsageError, match="still in the outbox"), store.transaction() as tx:
            tx.prune_chain(anchor)
        _sync(store)
        with store.transaction() as tx:
            tx.acknowledge(10, store.entry(10).hash)  # type: ignore[union-attr]
        assert _prune(store) == 12
        assert store.anchor()[0] == 12
        before = dict(store.book.balances())
        with store.transaction() as tx:
            tx.append_transfers([recharge(20), recharge(21)])
            tx.add_checkpoint(store.chain.checkpoint(KEY))
            tx.acknowledge(5, bytes(32))  # older than the anchor: a late duplicate, ignored
    for full in (False, True):
        with Store.open(booked, public_key=KEY.public_key, full_check=full) as store:
            assert store.boot_start == 12  # the anchor: no newer snapshot was taken
            assert [e.seq for e in store.entries()] == [13, 14]
            prepaid = pocket_id("A0001", Pocket.PREPAID)
            assert store.book.balance(prepaid).posted == before[prepaid].posted + 2000
            anchor = TrustedHead(*store.anchor())
            verdict = verify_lines(store.export_lines(), [KEY.public_key], trusted=anchor)
            assert verdict.ok, verdict.findings


def test_a_pruned_store_needs_the_key_and_a_good_anchor(booked: Path) -> None:
    with Store.open(booked, public_key=KEY.public_key) as store:
        _sync(store)
        _prune(store)
    with pytest.raises(StoreUsageError, match="pruned up to seq 12"):
        Store.open_readonly(booked)
    conn = sqlite3.connect(booked)
    with conn:
        conn.execute("UPDATE snapshots SET signature = ?", (bytes(64),))
    conn.close()
    with pytest.raises(CorruptStore, match="pruned anchor"):
        Store.open(booked, public_key=KEY.public_key)


def test_rows_put_back_before_the_anchor_are_found(booked: Path) -> None:
    with sqlite3.connect(booked) as conn:
        kept = conn.execute("SELECT * FROM ledger WHERE seq = 3").fetchone()
    conn.close()
    with Store.open(booked, public_key=KEY.public_key) as store:
        _sync(store)
        _prune(store)
    conn = sqlite3.connect(booked)
    with conn:
        conn.execute("INSERT INTO ledger VALUES (?, ?, ?, ?, ?)", kept)
    conn.close()
    with pytest.raises(CorruptStore, match="before the pruned anchor"):
        Store.open(booked, public_key=KEY.public_key)


def test_pruning_shrinks_the_file(db_path: Path) -> None:
    with Store.open(db_path, node=NODE, public_key=KEY.public_key) as store:
        for cycle in range(20):
            with store.transaction() as tx:
                tx.append_transfers([recharge(f"{cycle}-{i}") for i in range(50)])
                tx.insert_readings([reading(f"m{m}", cycle * 15) for m in range(50)])
        _sync(store)
        store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        full = db_path.stat().st_size
        with store.transaction() as tx:
            tx.prune_readings(FAR)
        _prune(store)
        assert store.vacuum() > 0
        store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert db_path.stat().st_size < full / 4
        assert store.chain.seq == 1000


def test_readings_sent_before_is_the_oldest_reading_still_waiting(store: Store) -> None:
    assert store.readings_sent_before() is None
    with store.transaction() as tx:
        tx.insert_readings([reading("m1", 30), reading("m2", 15)])
    with store.transaction() as tx:
        tx.insert_readings([reading("m1", 45)])
    assert store.readings_sent_before() == reading("m2", 15).time


# -- the property --------------------------------------------------------------------------

OWNERS = ("A0001", "A0002")
Step = tuple[str, int]
steps = st.lists(
    st.tuples(
        st.sampled_from(
            ["recharge", "consume", "refund", "resolve", "again", "ack", "snapshot", "prune",
             "reopen"]
        ),
        st.integers(0, 1),
    ),
    max_size=30,
)  # fmt: skip


class Model:
    """Drives a store and remembers what the cloud would hold: every entry appended."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.store = Store.open(path, node=NODE, public_key=KEY.public_key)
        self.cloud: list[Transfer] = []
        self.pending: list[Transfer] = []
        self.ids = itertools.count(1)

    def book(self, transfers: list[Transfer]) -> None:
        with self.store.transaction() as tx:
            self.cloud += [e.transfer for e in tx.append_transfers(transfers)]

    def step(self, action: str, who: int) -> None:
        owner = OWNERS[who]
        prepaid = pocket_id(owner, Pocket.PREPAID)
        available = self.store.book.balance(prepaid).available
        if action == "recharge":
            self.book([transfer(next(self.ids), CASH, prepaid, 500, Code.RECHARGE)])
        elif action == "consume" and available >= 30:
            first = transfer(next(self.ids), prepaid, SALES, 10, Code.CONSUME, linked=True)
            self.book([first, transfer(next(self.ids), prepaid, SALES, 20, Code.CONSUME)])
        elif action == "refund" and available >= 100:
            pending = transfer(
                next(self.ids), prepaid, REFUNDS, 100, Code.REFUND, kind=Kind.PENDING
            )
            self.book([pending])
            self.pending.append(pending)
        elif action == "resolve" and self.pending:
            p = self.pending.pop(0)
            kind, amount = (Kind.POST, 60) if who else (Kind.VOID, 100)
            self.book(
                [transfer(next(self.ids), p.debit, p.credit, amount, Code.REFUND, kind=kind,
                          pending_id=p.id)]
            )  # fmt: skip
        elif action == "again" and self.cloud:  # an id booked again, pruned or not
            self.book([self.cloud[-1 if who else 0]])
        elif action == "ack" and self.store.chain.seq:
            _sync(self.store)
        elif action == "snapshot" and self.store.chain.seq:
            _sign_snapshot(self.store)
        elif action == "prune":
            _prune(self.store)
        elif action == "reopen":
            self.store.close()
            self.store = Store.open(self.path, public_key=KEY.public_key)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps)
def test_balances_after_boot_equal_a_full_replay_of_the_cloud_copy(
    tmp_path: Path, plan: list[Step]
) -> None:
    model = Model(tmp_path / f"{uuid.uuid4().hex}.db")
    try:
        for action, who in plan:
            model.step(action, who)
        # Everything booked afterwards still works on the resumed book (post of an old pending).
        model.step("resolve", 1)
    finally:
        model.store.close()
    cloud = replay(model.cloud)
    expected = {a: b for a, b in cloud.balances().items()}
    for full in (False, True):
        with Store.open(model.path, public_key=KEY.public_key, full_check=full) as store:
            got = dict(store.book.balances())
            # An account whose totals are all zero is the same as one never opened.
            assert {a: got.get(a, Balance()) for a in expected} == expected
            assert all(b == Balance() for a, b in got.items() if a not in expected)
            assert [t.id for t in store.book.unresolved()] == [t.id for t in cloud.unresolved()]
            assert len(store.book) == len(cloud)


def test_a_tail_deleted_up_to_the_snapshot_is_found(booked: Path) -> None:
    with Store.open(booked, public_key=KEY.public_key) as store:
        _sign_snapshot(store)  # at the head, seq 12
    conn = sqlite3.connect(booked)
    with conn:
        conn.execute("DELETE FROM ledger WHERE seq = 12")
    conn.close()
    with pytest.raises(CorruptStore, match="tail rows deleted"):
        Store.open(booked, public_key=KEY.public_key)
