"""The people who use the cloud (docs/architecture.md §7): who may do what, and the record of
what they did.

`auth` holds the roles (admin, operator, finance, auditor, installer, merchant), users,
argon2id passwords, bearer tokens, login throttling and lockout; `oplog` is the append-only,
hash-chained operator log of every login, logout and change, with before and after values.
"""
