"""ews_ingest_lag_seconds observed a batch at a time exports what a prometheus_client Histogram exports."""

from __future__ import annotations

import random
import re

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from service.metrics import BatchHistogram, Metrics

BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)


def _exposed(registry: CollectorRegistry) -> str:
    # The _created time is each object's own construction time: compare that the series is there.
    return re.sub(r"^(\w+_created) \S+$", r"\1 T", generate_latest(registry).decode(), flags=re.MULTILINE)


def _both() -> tuple[CollectorRegistry, Histogram, CollectorRegistry, BatchHistogram]:
    one_by_one, batched = CollectorRegistry(auto_describe=True), CollectorRegistry(auto_describe=True)
    histogram = Histogram("ews_ingest_lag_seconds", "Lag", buckets=BUCKETS, registry=one_by_one)
    return one_by_one, histogram, batched, BatchHistogram("ews_ingest_lag_seconds", "Lag", BUCKETS, batched)


def test_batches_export_the_same_text_as_one_observe_per_value():
    rng = random.Random(7)
    one_by_one, histogram, batched, batch_histogram = _both()
    assert _exposed(batched) == _exposed(one_by_one)  # nothing observed yet
    edges = [0.0, 1.0, 5.0, 604800.0, 604800.5, float("inf"), 1e-9, 59.999999]  # on, above and past the bounds
    observed = 0
    for size in (0, 1, 3, 1000, 17):
        amounts = [rng.expovariate(1 / 600) for _ in range(size)] + edges[: size % 9]
        for amount in amounts:
            histogram.observe(amount)
        batch_histogram.observe_all(amounts)
        observed += len(amounts)
        assert _exposed(batched) == _exposed(one_by_one)
    assert f'ews_ingest_lag_seconds_bucket{{le="+Inf"}} {float(observed)}' in _exposed(batched)


def test_the_sum_is_added_in_order_like_observe_does():
    # sum() of floats compensates its rounding; a Histogram adds one value after another.
    one_by_one, histogram, batched, batch_histogram = _both()
    amounts = [1e16, 1.0, -1e16, 0.1] * 5
    for amount in amounts:
        histogram.observe(amount)
    batch_histogram.observe_all(amounts)
    assert _exposed(batched) == _exposed(one_by_one)


def test_the_service_metrics_export_the_lag_histogram():
    metrics = Metrics()
    metrics.ingest_lag.observe_all([0.5, 30.0])
    text = generate_latest(metrics.registry).decode()
    assert 'ews_ingest_lag_seconds_bucket{le="1.0"} 1.0' in text
    assert 'ews_ingest_lag_seconds_bucket{le="60.0"} 2.0' in text
    assert "ews_ingest_lag_seconds_count 2.0" in text and "ews_ingest_lag_seconds_sum 30.5" in text
    assert "# TYPE ews_ingest_lag_seconds_created gauge" in text
