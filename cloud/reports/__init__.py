"""Queries and reports: consumption, deposits, subsidies, refunds, meter status, monthly
statements; paged as JSON, exported to Excel, printed as PDF (docs/architecture.md §7).

`queries` builds each report (`Spec`), `core` pages and streams it, `excel` and `pdf` write
it, `templates` keeps admins' column choices, `statement` the monthly statement, `words` the
words printed for coded values.
"""
