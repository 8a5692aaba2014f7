"""The `/metrics` endpoint for Prometheus (`--prometheus ADDR:PORT`, TUI and headless alike).

`families` turns the latest engine snapshot into metric families at scrape time; `counters`
counts what arrives on the engine's bus (alerts, guard decisions, syscalls); `exporter` serves
both with prometheus_client on its own registry. Nothing here imports textual.
"""

from fluxtui.prometheus.exporter import (
    DEFAULT_ADDRESS,
    ListenAddressError,
    PrometheusExporter,
    parse_listen_address,
)

__all__ = ["DEFAULT_ADDRESS", "ListenAddressError", "PrometheusExporter", "parse_listen_address"]
