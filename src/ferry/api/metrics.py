"""`/metrics` in Prometheus' text format, with the well-kept `prometheus_client`.

A collector renders the database's `Snapshot` (service/metrics.py) at each
scrape: no counter lives in this process, so every controller (and one that
restarted) says the same.  Live per-migration series carry the migration's
id, VM, hosts and policy as labels and vanish when it ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ferry.service.metrics import Histogram, LiveMigration, Snapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LIVE_LABELS = ["id", "vm", "source", "destination", "policy"]
_LIVE: list[tuple[str, str, Callable[[LiveMigration], float | None]]] = [
    ("ferry_migration_remaining_bytes", "Memory still to send (last sample)",
     lambda m: m.remaining_bytes),
    ("ferry_migration_processed_bytes", "Memory sent so far (last sample)",
     lambda m: m.processed_bytes),
    ("ferry_migration_memory_bytes", "Guest memory the job moves", lambda m: m.total_bytes),
    ("ferry_migration_dirty_rate_bytes_per_second", "Rate the guest dirties memory",
     lambda m: m.dirty_rate_bytes_s),
    ("ferry_migration_transfer_rate_bytes_per_second", "Rate memory crosses the link",
     lambda m: m.transfer_rate_bytes_s),
    ("ferry_migration_round", "Pre-copy round (QEMU's iteration)", lambda m: m.iteration),
    ("ferry_migration_elapsed_seconds", "Time since the job started (last sample)",
     lambda m: m.elapsed_s),
    ("ferry_migration_predicted_seconds", "Predicted total time of the job",
     lambda m: m.predicted_total_s),
]


def _histogram(name: str, doc: str, h: Histogram) -> HistogramMetricFamily:
    buckets = [(repr(b), float(c)) for b, c in zip(h.bounds, h.cumulative, strict=False)]
    buckets.append(("+Inf", float(h.count)))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=h.total)


class SnapshotCollector(Collector):
    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self._snapshot()
        g = GaugeMetricFamily("ferry_migrations", "Migration records by state and policy",
                              labels=["state", "policy"])
        for (state, policy), n in sorted(s.migrations.items()):
            g.add_metric([state, policy], n)
        yield g
        yield GaugeMetricFamily("ferry_admission_queue_length",
                                "Migrations waiting for the concurrency limits", value=s.queued)
        yield _histogram("ferry_migration_duration_seconds",
                         "Total time of completed migrations (libvirt's job)", s.duration_s)
        yield _histogram("ferry_migration_pause_seconds",
                         "Guest pause (QEMU's downtime) of completed migrations", s.pause_s)
        yield _histogram("ferry_migration_transferred_bytes",
                         "Bytes sent by completed migrations", s.transferred_bytes)
        yield _histogram("ferry_migration_prediction_error_ratio",
                         "|predicted - actual| / actual total time of completed migrations",
                         s.prediction_error)
        for name, doc, value in _LIVE:
            g = GaugeMetricFamily(name, doc, labels=_LIVE_LABELS)
            for m in s.live:
                v = value(m)
                if v is not None:
                    g.add_metric([str(m.id), m.vm, m.source, m.destination, m.policy], v)
            yield g
        eta = GaugeMetricFamily("ferry_drain_eta_seconds",
                                "Time a drain in progress still needs (its schedule's ETA)",
                                labels=["id", "host"])
        moves = GaugeMetricFamily("ferry_drain_moves", "Moves of drains in progress by state",
                                  labels=["id", "host", "state"])
        for d in s.drains:
            if d.eta_s is not None:
                eta.add_metric([str(d.id), d.host], d.eta_s)
            for state, n in sorted(d.moves.items()):
                moves.add_metric([str(d.id), d.host, state], n)
        yield eta
        yield moves
        hosts = GaugeMetricFamily("ferry_hosts", "Registered hosts by state", labels=["state"])
        for state, n in sorted(s.hosts.items()):
            hosts.add_metric([state], n)
        yield hosts


def render(snapshot: Callable[[], Snapshot]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    return generate_latest(registry)
