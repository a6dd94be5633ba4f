"""Grafana dashboards and Prometheus alert rules for govclock, as code.

``python -m dashboards.build`` writes ``dashboards/generated/*.json`` from the builder
functions (:mod:`dashboards.oncall`, :mod:`dashboards.compliance`, :mod:`dashboards.pipeline`);
``--check`` fails when the committed JSON differs from a fresh build. The alert rules are
``dashboards/alerts.yaml`` with promtool unit tests in ``dashboards/alerts_test.yaml``.
Every metric they query is defined in :mod:`streams.metrics`. See docs/dashboards.md.
"""
