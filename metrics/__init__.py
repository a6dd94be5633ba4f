"""The Prometheus metrics a worker exposes: each family declared once."""
