"""``Family`` lists -> the bytes of a scrape, in the format the scraper asks for.

The only module that imports ``prometheus_client`` (the ``metrics`` extra): the text format and
OpenMetrics (chosen from the scraper's ``Accept`` header by the library's own ``choose_encoder``),
and the library's ``process_*`` collector for the process serving the scrape. Imported on the first
scrape, so a server that is never scraped never loads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import accumulate
from typing import cast

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from asgi_worker.metrics.counts import DURATION_BUCKETS
from asgi_worker.metrics.families import Family

__all__ = ["Scrape"]

_BOUNDS = [repr(bound) for bound in DURATION_BUCKETS] + ["+Inf"]  # "0.005", "1.0": as the library writes


def _convert(family: Family) -> Metric:
    labels = list(family.labels)
    metric: Metric
    if family.kind == "histogram":
        metric = HistogramMetricFamily(family.name, family.doc, labels=labels, unit=family.unit)
        for values, sample in family.samples:
            counts, total = cast(tuple[list[float], float], sample)
            buckets = list(zip(_BOUNDS, accumulate(counts), strict=True))
            metric.add_metric(list(values), buckets, total)
        return metric
    cls = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
    metric = cls(family.name, family.doc, labels=labels, unit=family.unit)
    for values, value in family.samples:
        metric.add_metric(list(values), cast(float, value))
    return metric


class _Families(Collector):
    def __init__(self, collect: Callable[[], Iterable[Family]]) -> None:
        self._collect = collect

    def collect(self) -> Iterator[Metric]:
        for family in self._collect():
            yield _convert(family)


class Scrape:
    """What ``/metrics`` answers: ``collect()``'s families plus ``process_*`` of this process."""

    def __init__(self, collect: Callable[[], Iterable[Family]]) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_Families(collect))
        ProcessCollector(registry=self._registry)

    def render(self, accept: str) -> tuple[bytes, str]:
        """The scrape's body and content type, OpenMetrics when ``accept`` asks for it."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self._registry), content_type
