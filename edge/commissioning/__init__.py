"""Commissioning a building: find the meters on every bus, read them, test their relays, and
write the signed report a building manager signs (`voltbook-edge commission`, §6.8 of
docs/architecture.md). `finding` discovers the meters of one bus, `engine` runs the whole
check, `report_file` signs and writes the file (its format: `ledger.commissioning`)."""
