"""A real Prometheus server for tests: started on 127.0.0.1, queried over its HTTP API.

``prometheus`` is Debian's package (``make tools`` installs it). Each server has its own
free port, a temporary TSDB directory and a generated configuration that scrapes the given
targets every ``scrape_interval``; it runs in a session of its own and is stopped (SIGTERM,
then SIGKILL) when the ``with`` block ends. Nothing listens beyond loopback.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml

MAKE_TOOLS = (
    "prometheus is not on PATH: run `make tools` (installs Debian's prometheus package, "
    "which has both prometheus and promtool)"
)
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def require_prometheus() -> str:
    """The prometheus binary, or the test fails (it does not skip) saying what to install."""
    path = shutil.which("prometheus")
    if path is None:
        pytest.fail(MAKE_TOOLS)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PrometheusError(RuntimeError):
    """The HTTP API answered with an error (bad query, evaluation error, HTTP status)."""


def has_values(result: Mapping[str, Any]) -> bool:
    """Whether a query's ``data`` holds at least one value that is a number (not NaN)."""
    kind, items = result["resultType"], result["result"]
    if kind == "scalar" or kind == "string":
        return not (kind == "scalar" and math.isnan(float(items[1])))
    samples: list[Any] = []
    for series in items:
        if "value" in series:
            samples.append(series["value"])
        samples.extend(series.get("values", []))
    return any(not math.isnan(float(v)) for _, v in samples)


def summary(result: Mapping[str, Any]) -> str:
    """A short account of a query's ``data``: how many series, the last value of each."""
    kind, items = result["resultType"], result["result"]
    if kind == "scalar":
        return f"scalar {items[1]}"
    lasts = []
    for series in items:
        value = series["value"] if "value" in series else series["values"][-1]
        labels = ",".join(f"{k}={v}" for k, v in sorted(series["metric"].items()))
        lasts.append(f"{{{labels}}} {value[1]}")
    shown = "; ".join(lasts[:4]) + ("; …" if len(lasts) > 4 else "")
    return f"{len(items)} series: {shown}" if items else "no series"


@dataclass
class Prometheus:
    """One ``prometheus`` process (use it as a context manager)."""

    binary: str
    workdir: Path
    targets: Sequence[str]
    job: str = "govclock"
    scrape_interval: str = "1s"
    rule_files: Sequence[Path] = ()
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    _log: Any = field(default=None, repr=False)

    # -- process ---------------------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        return self.workdir / "prometheus.log"

    def config(self) -> dict[str, Any]:
        return {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
            },
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [
                {
                    "job_name": self.job,
                    "metrics_path": "/metrics",
                    "static_configs": [{"targets": list(self.targets)}],
                }
            ],
        }

    def start(self) -> Prometheus:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config(), sort_keys=False), encoding="utf-8")
        self.port = free_port()
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started_at = time.time()
        return self

    def describe(self) -> str:
        code = None if self.proc is None else self.proc.poll()
        try:
            log = self.log_path.read_text(errors="replace").splitlines()[-30:]
        except OSError:
            log = ["(no log)"]
        return f"prometheus on port {self.port} (exit {code}); its log:\n" + "\n".join(log)

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(STOP_TIMEOUT)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Prometheus:
        return self.start() if self.proc is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- HTTP API --------------------------------------------------------------------------

    def get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """``GET /api/v1/<path>``'s ``data`` (raises PrometheusError on an error answer)."""
        url = f"/api/v1/{path}" + (f"?{urlencode(params)}" if params else "")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", url)
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        try:
            answer = json.loads(body)
        except ValueError:
            raise PrometheusError(f"{url}: HTTP {resp.status}: {body[:500]!r}") from None
        if answer.get("status") != "success":
            raise PrometheusError(
                f"HTTP {resp.status}: {answer.get('errorType')}: {answer.get('error')}"
            )
        return answer["data"]

    def query(self, expr: str, at: float) -> dict[str, Any]:
        data: dict[str, Any] = self.get("query", {"query": expr, "time": f"{at:.3f}"})
        return data

    def query_range(self, expr: str, start: float, end: float, step: float) -> dict[str, Any]:
        data: dict[str, Any] = self.get(
            "query_range",
            {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"},
        )
        return data

    def ready(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", "/-/ready")
            return conn.getresponse().status == 200
        finally:
            conn.close()

    def last_scrape(self) -> float:
        """When the newest successful scrape of every target happened (0 if none yet)."""
        result = self.query(f'timestamp(up{{job="{self.job}"}} == 1)', time.time())["result"]
        if len(result) < len(self.targets):
            return 0.0
        return min(float(series["value"][1]) for series in result)

    def wait(self, what: str, probe: Any, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            if self.proc is None or self.proc.poll() is not None:
                pytest.fail(f"prometheus exited while waiting for {what}: {self.describe()}")
            try:
                last = probe()
            except (OSError, http.client.HTTPException, PrometheusError) as exc:
                last = exc
            else:
                if last:
                    return last
            if time.monotonic() >= deadline:
                pytest.fail(f"{what}: not within {timeout:g} s; last: {last!r}\n{self.describe()}")
            time.sleep(0.2)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        self.wait("prometheus /-/ready", self.ready, timeout)

    def wait_scraped_after(self, t: float, scrapes: int = 1, timeout: float = 20.0) -> float:
        """Wait until every target has been scraped successfully ``scrapes`` times after
        ``t`` (epoch seconds); returns the time of the last of them."""
        interval = parse_duration(self.scrape_interval)
        after = t + (scrapes - 1) * interval
        scraped: float = self.wait(
            f"{scrapes} scrape(s) of {list(self.targets)} after {t:.1f}",
            lambda: (s := self.last_scrape()) > after and s,
            timeout,
        )
        return scraped

    def rules(self) -> list[dict[str, Any]]:
        data = self.get("rules")
        return [rule for group in data["groups"] for rule in group["rules"]]


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def parse_duration(text: str) -> float:
    """A Prometheus duration (``1s``, ``5m``, ``1h30m``, ``7d``) in seconds."""
    parts = re.findall(r"(\d+)(ms|[smhdwy])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def seconds_text(seconds: float) -> str:
    """Whole seconds as a Prometheus duration (rounded up, at least 1s)."""
    return f"{max(1, math.ceil(seconds))}s"
