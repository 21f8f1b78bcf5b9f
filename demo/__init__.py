"""`python -m demo` (`make demo`): the whole system on one machine, in six acts, driving the
real edge runtime and the real cloud (docs/architecture.md §2: it may import everything).

`__main__` runs the acts and is act 1 (the ledger: a day booked into a signed chain, verified,
then tampered with four ways); `meters_act` (act 2: simulated meters on virtual serial ports
and a LoRa link), `month_act` (act 3: a 30-shop market billed for a month), `cloud_act` (act 4:
the cloud, its broker and a concentrator syncing over MQTT; a top-up closes a tripped relay)
and `operations_act` (act 5, run by act 4: a correction, a meter swap from an infrared handheld
and a refund, each settled through the concentrator's ledger and printed as a receipt).
"""
