"""What Prometheus sees of the cloud (`GET /metrics`, off unless `[metrics]` is configured;
docs/architecture.md §7.6).

- `figures`: the state gauges, read from the database at every scrape (nodes and their ingest
  lag, refused batches, commands and payment orders by state), so they equal the database
  whichever process answers;
- `latency`: the API's latency histogram, labelled by route template (bounded cardinality);
- `restore_drill`: the restore drill's last result, a small JSON file (the contract the
  backups' drill writes and the scrape reads);
- `endpoint`: the route and its bearer token, wired by `cloud.app`.
"""
