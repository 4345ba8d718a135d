"""Prometheus metrics of one process, in its own registry (nothing global at import time)."""

from __future__ import annotations

import bisect
import functools
import operator
import os
import threading
import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString


class Metrics:
    """The counters and histograms the service updates as it works."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.readings_accepted = Counter(
            "ews_readings_accepted", "Samples stored (first time seen)", ["source"], registry=self.registry
        )
        self.readings_duplicate = Counter(
            "ews_readings_duplicate", "Samples received again and ignored", ["source"], registry=self.registry
        )
        self.readings_rejected = Counter(
            "ews_readings_rejected", "Samples or payloads rejected, by reason", ["reason"], registry=self.registry
        )
        self.readings_quality = Counter(
            "ews_readings_quality", "Water levels the quality check marked (doubtful when held back, spike when "
            "refuted, good when confirmed), spec section 17", ["quality"], registry=self.registry
        )
        self.dead_letters_dropped = Counter(
            "ews_dead_letters_dropped", "Oldest dead letters dropped to stay under EWS_DEAD_LETTER_MAX_MB",
            registry=self.registry,
        )
        self.ingest_lag = BatchHistogram(
            "ews_ingest_lag_seconds",
            "Receive time minus measurement time of accepted samples",
            buckets=(1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400),
            registry=self.registry,
        )
        self.ingest_batch_seconds = Histogram(
            "ews_ingest_batch_seconds", "Time to validate and commit one batch of MQTT messages", registry=self.registry
        )
        self.mqtt_connected = Gauge("ews_mqtt_connected", "1 when the ingest client is connected", registry=self.registry)
        # Sirens (spec section 12, docs/sirens.md).
        self.siren_published = Counter("ews_siren_commands_published", "Siren commands published: first, or again "
                                       "(no ack in time)", ["attempt"], registry=self.registry)
        self.siren_acks = Counter("ews_siren_acks", "Siren acks recorded, by state", ["state"], registry=self.registry)
        self.siren_unanswered = Counter("ews_siren_unanswered", "Siren commands that stayed unanswered after every "
                                        "re-send", registry=self.registry)
        self.sms_sent = Counter("ews_sms_requests", "Provider send requests, by outcome", ["outcome"], registry=self.registry)
        self.sms_slots_missed = Counter("ews_sms_rate_slots_missed", "Rate slots a sender woke too late for and gave "
                                        "up (the machine is too busy for the rate)", registry=self.registry)
        self.sms_provider_requests = Counter(
            "ews_sms_provider_requests", "Messages handed to each SMS provider, by outcome (accepted, refused, "
            "unknown, failed, busy)", ["provider", "outcome"], registry=self.registry)
        self.sms_provider_up = Gauge("ews_sms_provider_up", "1 unless the SMS provider is down (failed over)",
                                     ["provider"], registry=self.registry)
        self.provider_latency = Histogram(
            "ews_sms_provider_latency_seconds",
            "Time the SMS provider took to answer a send request",
            buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )


# prometheus_client's own switch for the _created series, read the way it reads it.
_CREATED = os.environ.get("PROMETHEUS_DISABLE_CREATED_SERIES", "False").lower() not in ("true", "1", "t")


class BatchHistogram:
    """A histogram that takes a batch of observations under one lock (a ``Histogram`` takes two locks for each).

    It exports what a ``Histogram`` with these buckets exports (the _bucket, _count, _sum and
    _created series, the same values): the ingest records one lag per stored reading.
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry) -> None:
        self.name, self.documentation = name, documentation
        self._bounds = [float(b) for b in buckets] + ([] if float(buckets[-1]) == float("inf") else [float("inf")])
        self._labels = [floatToGoString(bound) for bound in self._bounds]  # as a Histogram writes each le
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        self._created = time.time()
        self._lock = threading.Lock()
        registry.register(self)

    def observe_all(self, amounts: Sequence[float]) -> None:
        """Observe each of ``amounts`` (numbers, not NaN): counted in the first bucket whose bound it does not exceed."""
        counts, bounds = [0] * len(self._bounds), self._bounds
        for amount in amounts:
            counts[bisect.bisect_left(bounds, amount)] += 1
        with self._lock:
            # One by one, in order: the same float sum as one observe() after another.
            self._sum = functools.reduce(operator.add, amounts, self._sum)
            self._counts = list(map(operator.add, self._counts, counts))

    def describe(self) -> list:
        return [HistogramMetricFamily(self.name, self.documentation)]

    def collect(self) -> list:
        with self._lock:
            counts, total = self._counts, self._sum
        cumulative, buckets = 0.0, []
        for label, count in zip(self._labels, counts):
            cumulative += count
            buckets.append((label, cumulative))
        families = [HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=total)]
        if _CREATED:  # a Histogram's _created comes out as a gauge of its own in the text format
            families.append(GaugeMetricFamily(f"{self.name}_created", self.documentation, value=self._created))
        return families

