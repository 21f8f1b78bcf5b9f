"""The site configuration: `site.toml` and the configuration documents, typed and checked.

- `model`: the typed, frozen values (`Site`, `BusConfig`, `MeterConfig`, `Rules`, …).
- `site_file`: `site.toml` (node, zone, paths, intervals, buses, simulation).
- `documents`: the tinydb documents (meters, shops, accounts, tariffs, rules) → policies.
- `load`: `load_site(path)`, which reads both and checks every reference; touches nothing.
- `simulation`: the seam to a meter simulator for `simulated` buses (found by entry point).
- `errors`: `SiteConfigError`, one sentence naming the file and what is wrong.
"""

from edge.site.errors import SiteConfigError
from edge.site.load import load_site
from edge.site.model import Site

__all__ = ["Site", "SiteConfigError", "load_site"]
