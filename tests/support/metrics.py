"""Read Prometheus text exposition with prometheus-client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample; raises ValueError if the text is not valid exposition format."""
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels`` (0 if none)."""
    return sum(
        v
        for n, sample_labels, v in samples(text)
        if n == name and all(sample_labels.get(k) == want for k, want in labels.items())
    )
