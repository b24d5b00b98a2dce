"""Prometheus metrics: one registry per application, so several apps in one process stay apart.

Counters and histograms are bumped where things happen; gauges that describe current state (pool
usage, supervised tasks) are read at scrape time by a collector.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "chatserver_http_requests", "HTTP requests answered", ["route", "method", "status"],
            registry=r)
        self.http_duration = Histogram(
            "chatserver_http_request_duration_seconds", "HTTP request handling time", ["route"],
            buckets=LATENCY_BUCKETS, registry=r)
        self.messages_in = Counter(
            "chatserver_messages_in", "Messages committed by this instance", ["source"],
            registry=r)
        self.messages_out = Counter(
            "chatserver_messages_out", "Message frames delivered to local sockets", registry=r)
        self.sockets_open = Gauge(
            "chatserver_sockets_open", "Websockets open on this instance", registry=r)
        self.fanout_latency = Histogram(
            "chatserver_fanout_latency_seconds", "Commit to local delivery",
            buckets=LATENCY_BUCKETS, registry=r)
        self.webhook_attempts = Counter(
            "chatserver_webhook_attempts", "Webhook delivery attempts", ["result"], registry=r)
        self.deltas_in = Counter(
            "chatserver_stream_deltas_in", "Stream deltas committed by this instance",
            registry=r)
        self.deltas_out = Counter(
            "chatserver_stream_deltas_out", "Stream deltas delivered to local sockets",
            registry=r)
        self.stream_commits = Counter(
            "chatserver_stream_commits", "Group commits of stream deltas", registry=r)
        self.rate_limited = Counter(
            "chatserver_rate_limited", "Requests refused by a rate limit", ["limit"], registry=r)

        self._refreshers: list[Callable[[], Awaitable[None]]] = []

    def watch(self, collector: Collector) -> None:
        """Add a scrape-time collector (state read when /metrics is fetched)."""
        self.registry.register(collector)

    def before_scrape(self, refresh: Callable[[], Awaitable[None]]) -> None:
        """Run `refresh` before each scrape (for state that takes I/O to read; cache it)."""
        self._refreshers.append(refresh)

    async def refresh(self) -> None:
        for refresh in self._refreshers:
            await refresh()


class StateCollector(Collector):
    """Scrape-time gauges from callables returning {labels tuple: value}."""

    def __init__(self, name: str, doc: str, labels: list[str], read: Any) -> None:
        self.name, self.doc, self.labels, self.read = name, doc, labels, read

    family: type[GaugeMetricFamily] | type[CounterMetricFamily] = GaugeMetricFamily

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        family = self.family(self.name, self.doc, labels=self.labels)
        for labels, value in self.read().items():
            family.add_metric(list(labels), value)
        yield family

    def describe(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield self.family(self.name, self.doc, labels=self.labels)


class CountCollector(StateCollector):
    """Scrape-time counters: totals kept elsewhere (e.g. the bus's reconnect count)."""

    family = CounterMetricFamily
