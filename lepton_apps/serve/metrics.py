"""Prometheus metrics of the service, in a registry of its own (several apps in one process stay apart)."""
from __future__ import annotations

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServiceMetrics:
    """Requests and errors per domain, endpoint, model version and status; latency and batch-size histograms."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("lepton_requests_total", "Requests answered, by domain, endpoint, model version "
                                "and HTTP status", ["domain", "endpoint", "model_version", "status"],
                                registry=self.registry)
        self.errors = Counter("lepton_request_errors_total", "Requests answered with a 4xx or 5xx status",
                              ["domain", "endpoint", "model_version", "status"], registry=self.registry)
        self.latency = Histogram("lepton_request_latency_seconds", "Time from the request to the response",
                                 ["domain", "endpoint", "model_version"], buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        self.batch_size = Histogram("lepton_batch_size_items", "Items per predict call (after micro-batching)",
                                    ["domain"], buckets=BATCH_BUCKETS, registry=self.registry)

    def observe(self, domain: str, endpoint: str, model_version: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        labels = (domain, endpoint, model_version)
        self.requests.labels(*labels, str(status)).inc()
        if status >= 400:
            self.errors.labels(*labels, str(status)).inc()
        self.latency.labels(*labels).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """Return (the metrics in Prometheus text format, its content type)."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
