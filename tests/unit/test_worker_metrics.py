"""/metrics with several workers: any worker answers with every worker's series, each labelled
with its worker, every metric's HELP and TYPE once."""

from __future__ import annotations

from services.proxy.transport.worker_metrics import WorkerMetrics
from shared.metrics import Registry


def registry_with(sent: float) -> Registry:
    registry = Registry()
    registry.counter("proxy_usage_events_sent_total", "Usage events acknowledged by Kafka").inc(sent)
    registry.gauge("proxy_keys", "Virtual keys", callback=lambda: 7.0)
    return registry


def test_a_single_registry_renders_as_before():
    """A registry alone renders each metric's HELP, TYPE and unlabelled sample as Prometheus text."""
    assert registry_with(3).render() == (
        "# HELP tally_proxy_usage_events_sent_total Usage events acknowledged by Kafka\n"
        "# TYPE tally_proxy_usage_events_sent_total counter\n"
        "tally_proxy_usage_events_sent_total 3.0\n"
        "# HELP tally_proxy_keys Virtual keys\n"
        "# TYPE tally_proxy_keys gauge\n"
        "tally_proxy_keys 7.0\n"
    )


def test_every_worker_answers_with_every_workers_series(tmp_path):
    """Each worker renders every current worker's series, labelled by worker and its own live, and none of a gone worker."""
    registries = [registry_with(3), registry_with(5), registry_with(11)]
    shared = [WorkerMetrics(r, tmp_path, worker=i, workers=2) for i, r in enumerate(registries[:2])]
    WorkerMetrics(registries[2], tmp_path, worker=2, workers=3).write()  # a worker that no longer exists
    for worker in shared:
        worker.write()
    expected = (
        "# HELP tally_proxy_usage_events_sent_total Usage events acknowledged by Kafka\n"
        "# TYPE tally_proxy_usage_events_sent_total counter\n"
        'tally_proxy_usage_events_sent_total{worker="%s"} %s\n'
        'tally_proxy_usage_events_sent_total{worker="%s"} %s\n'
        "# HELP tally_proxy_keys Virtual keys\n"
        "# TYPE tally_proxy_keys gauge\n"
        'tally_proxy_keys{worker="%s"} 7.0\n'
        'tally_proxy_keys{worker="%s"} 7.0\n'
    )
    assert registries[0].render() == expected % ("0", "3.0", "1", "5.0", "0", "1")
    registries[1].counter("proxy_usage_events_sent_total", "").inc(1)  # live for itself, as last written for the others
    assert registries[1].render() == expected % ("1", "6.0", "0", "3.0", "1", "0")
