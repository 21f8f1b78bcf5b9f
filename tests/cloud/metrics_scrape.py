"""Reading a `/metrics` answer back in tests: Prometheus' own parser, samples by name and labels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape: (name, labels) → value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (KeyError when it is absent)."""
    return samples[name, frozenset(labels.items())]


def labelled(samples: Samples, name: str, label: str) -> dict[str, float]:
    """The samples of `name`, by the value of their one `label`."""
    return {dict(key)[label]: v for (n, key), v in samples.items() if n == name}
