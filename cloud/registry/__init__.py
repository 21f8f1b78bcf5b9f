"""The registry: what operators declare — sites, buildings, floors, shops, merchants, account
types, accounts, meters, tariffs, subsidy, alarm and arrears policies — and the configuration
each concentrator is given from it (docs/architecture.md §7).

`rows` creates, reads, lists, changes and deletes rows of every kind the same way; `entities`
describes each kind (references, checks, filters, which nodes it feeds); `values` checks values
the way the concentrator will; `site_config` builds a node's configuration documents and sends
them as a signed `config` command; `subsidy_rules` decides each account's monthly subsidy (and
the `voltbook.subsidy` entry-point hook sites extend it by).
"""
