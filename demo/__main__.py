"""`make demo`: shows, on one machine, what Voltbook can do so far.

Act 1 — the ledger: a concentrator books a small day (recharge, monthly subsidy, consumption
split subsidy-first, a two-phase refund) into its signed hash chain, exports it, and the
verifier confirms it. Then the export is tampered with four ways and the verifier names each.

Act 2 — the meters (`demo.meters_act`): simulated buses on virtual serial ports with real
wire timing are discovered and read; a relay is tripped and confirmed; a meter is read over
a simulated LoRa link.

Act 3 — the runtime (`demo.month_act`): a 30-shop market billed for a simulated month by
the real concentrator runtime: subsidies, consumption, trips and closes, alarms, a verified
ledger; three shops' CJ/T 188 water meters billed by volume from the same prepaid pockets.

Act 4 — the cloud (`demo.cloud_act`, `demo.payments_act`): the cloud, its broker and a
concentrator syncing over MQTT, beside the payment providers' sandbox and a WeChat Official
Account stand-in on loopback. Tenants cut off for arrears pay: one merchant on the phone by
WeChat Pay (h5), one by Alipay (wap) — the order, the sandbox's pay page, the provider's signed
notification, the order credited — and a third cash at the desk (`POST /recharges`); each
recharge reaches the concentrator as a signed command and closes the relay it had tripped; the
merchants' notices (cut-off, recharge credited) are shown with their delivery (WeChat template
message, or SMS when WeChat will not take it).

Act 5 — operations (`demo.operations_act`): the desk's top-up corrected, a dead meter swapped
with an infrared handheld's reading, a departing tenant refunded; each with its receipt. The
cloud ends with the concentrator's chain, head for head.

Act 6 — provisioning (`demo.provision_act`): an operator pre-assigns a node to a new site, the
installer's claim token is bound to it, a signed bundle is built offline (from this
environment's wheels) and installed into a throwaway root, whose `voltbook-edge --version` runs;
a simulated box redeems the token (`voltbook-edge provision`), is commissioned against its
simulated buses (the report's PDF path printed) and runs, online over TLS.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from demo.meters_act import act_meters
from demo.month_act import act_month
from ledger.accounts import AccountId, Pocket, System, pocket_id, system_id, unit_of
from ledger.book import Book, replay
from ledger.chain import Chain, Checkpoint, Entry, NodeKey, public_key_pem, sign_checkpoint
from ledger.export import Record, parse_lines, record_line
from ledger.invariants import ledger_violations
from ledger.transfers import Code, Kind, TimeSource, Transfer
from ledger.units import ExactCost, Fen, Price, Wh, charge_step, exact_cost, fen_to_yuan

NODE = "edge-demo-0001"
SHOP = "B1-F2-017"


def _t(
    n: int, debit: AccountId, credit: AccountId, amount: int, code: Code, **kw: object
) -> Transfer:
    return Transfer(
        id=(0xD3 << 120) + n,
        debit=debit,
        credit=credit,
        amount=amount,
        unit=unit_of(debit),
        code=code,
        time=f"2026-11-0{1 + n // 4}T0{8 + n % 4}:00:00+08:00",
        time_source=TimeSource.NTP,
        **kw,  # type: ignore[arg-type]
    )


def book_a_day() -> list[Transfer]:
    prepaid, subsidy = pocket_id(SHOP, Pocket.PREPAID), pocket_id(SHOP, Pocket.SUBSIDY)
    fen, cost = charge_step(ExactCost(0), exact_cost(Wh(8_420), Price(8365)))
    regs = {"meter": "123456789012", "reg_from": 1_234_560, "reg_to": 1_252_980}
    return [
        _t(
            1,
            system_id(System.CASH_IN_TRANSIT),
            prepaid,
            10_000,
            Code.RECHARGE,
            refs={"payment": "WX4200001", "method": "wechat"},
        ),
        _t(
            2,
            system_id(System.SUBSIDY_ISSUED),
            subsidy,
            10_000,
            Code.SUBSIDY_ISSUE,
            refs={"period": "2026-11"},
        ),
        _t(
            3,
            subsidy,
            system_id(System.SUBSIDY_USED),
            10_000,
            Code.CONSUME,
            linked=True,
            refs={**regs, "energy_wh": 10_000},
        ),
        _t(
            4,
            prepaid,
            system_id(System.ENERGY_SALES),
            fen,
            Code.CONSUME,
            refs={**regs, "energy_wh": 8_420, "cost_cum": cost},
        ),
        _t(
            5,
            prepaid,
            system_id(System.REFUNDS_PAYABLE),
            2_000,
            Code.REFUND,
            kind=Kind.PENDING,
            refs={"command": "CMD-17"},
        ),
        _t(
            6,
            prepaid,
            system_id(System.REFUNDS_PAYABLE),
            2_000,
            Code.REFUND,
            kind=Kind.POST,
            pending_id=(0xD3 << 120) + 5,
            refs={"command": "CMD-17"},
        ),
    ]


def _verify(chain_file: Path, key_file: Path) -> tuple[int, str]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge.cli",
            "ledger",
            "verify",
            "--chain",
            str(chain_file),
            "--key",
            str(key_file),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode, (result.stderr or result.stdout).strip().splitlines()[0]


def act_ledger(workdir: Path) -> None:
    print("== Act 1: the signed, hash-chained ledger")
    key = NodeKey.generate()
    chain = Chain(NODE)
    book = Book(open_accounts=True)
    records: list[Record] = []
    for batch in (book_a_day()[:2], book_a_day()[2:4], book_a_day()[4:]):
        book.post(*batch)
        records += [chain.append(t) for t in batch]
        records.append(chain.checkpoint(key))
    prepaid, subsidy = pocket_id(SHOP, Pocket.PREPAID), pocket_id(SHOP, Pocket.SUBSIDY)
    print(f"  shop {SHOP}: 100.00 yuan paid by WeChat, 10 kWh subsidy for 2026-11,")
    print(
        "  18.42 kWh used (10 kWh from subsidy, 8.42 kWh at 0.8365 yuan/kWh), 20.00 yuan refunded"
    )
    print(
        f"  balance: prepaid {fen_to_yuan(Fen(book.balance(prepaid).posted))} yuan, "
        f"subsidy {book.balance(subsidy).posted} Wh; "
        f"{chain.seq} entries, head {chain.head.hex()[:16]}…"
    )
    transfers = [r.transfer for r in records if isinstance(r, Entry)]
    problems = ledger_violations(transfers, replay(transfers).balances(), ["WX4200001"])
    print(f"  ledger invariants (docs/architecture.md §5.6): {problems or 'all hold'}")

    key_file = workdir / "node.pub"
    key_file.write_bytes(public_key_pem(key.public_key))
    lines = [record_line(r) for r in records]
    sound = workdir / "chain.jsonl"
    sound.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out = _verify(sound, key_file)
    print(f"  verify {sound.name}: exit {code}  {out}")

    intruder = NodeKey.generate()

    def resign(ls: list[str]) -> list[str]:
        out = []
        for _, rec in parse_lines(ls):
            forged = (
                sign_checkpoint(intruder, rec.node, rec.seq, rec.head)
                if isinstance(rec, Checkpoint)
                else rec
            )
            out.append(record_line(forged))
        return out

    refund = 6  # line of entry 5 (after the checkpoint lines at 2 and 5)
    tampers: dict[str, Callable[[list[str]], list[str]]] = {
        "refund raised to 200.00 yuan": lambda ls: [
            *ls[:refund],
            ls[refund].replace('"amount":2000', '"amount":20000'),
            *ls[refund + 1 :],
        ],
        "entry 2 deleted": lambda ls: [ls[0], *ls[2:]],
        "entries 4 and 5 swapped": lambda ls: [*ls[:4], ls[6], ls[4], ls[5], *ls[7:]],
        "re-signed by another key": resign,
    }
    for name, tamper in tampers.items():
        bad = workdir / "tampered.jsonl"
        bad.write_text("\n".join(tamper(lines)) + "\n", encoding="utf-8")
        code, out = _verify(bad, key_file)
        print(f"  {name:30} → exit {code}  {out.split(': ', 1)[-1]}")


def main() -> None:
    live = "--live" in sys.argv[1:]  # `make demo`: the console stays up, the market live
    with tempfile.TemporaryDirectory(prefix="voltbook-demo-") as tmp:
        act_ledger(Path(tmp))
    act_meters()
    print("\n== Act 3: the concentrator runtime bills a market for a simulated month")
    with tempfile.TemporaryDirectory(prefix="voltbook-month-") as tmp:
        act_month(Path(tmp))
    print("\n== Acts 4-6: the cloud — merchants pay by WeChat Pay and Alipay, relays close; "
          "correction, swap, refund; a new concentrator provisioned")  # fmt: skip
    from demo.cloud_act import act_cloud  # the cloud's packages: only for this act

    with tempfile.TemporaryDirectory(prefix="voltbook-cloud-") as tmp:
        act_cloud(Path(tmp), live=live)
    print(json.dumps({"demo": "done"}))


if __name__ == "__main__":
    main()
