"""Grafana dashboards and Prometheus alert rules for govclock, as code (docs/dashboards.md)."""
