"""One embedded broker for the whole session (it starts in ~20 ms; tests that need a broker
of their own, e.g. to crash it, start one in their own directory)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streams.broker import EmbeddedBroker
from streams.topics import TopicSpec, create_topics


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(tmp_path_factory.mktemp("broker"), start_timeout=10.0) as b:
        yield b
    assert not b.running


@pytest.fixture
def new_topic(broker: EmbeddedBroker) -> Callable[..., str]:
    """``new_topic(partitions=4)``: a topic of its own for one test, created and ready."""

    def make(partitions: int = 4) -> str:
        name = f"test-{uuid.uuid4().hex[:12]}"
        create_topics(broker.bootstrap, [TopicSpec(name, partitions, key="-", purpose="test")])
        return name

    return make


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "var"
    path.mkdir()
    return path


# The monitor fixture lives beside the tests that introduced it; other modules use it too.
from tests.integration.test_monitor import monitor_factory  # noqa: E402, F401
