"""The embedded Tansu broker, topic creation and settings, against a real broker process.

Every test is bounded (module timeout below; waits inside have their own deadlines)."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTopicPartition
from kafka.partitioner.default import murmur2

import streams.broker as broker_mod
from config.settings import Settings, SettingsError, load_settings
from streams.broker import (
    BrokerInUseError,
    EmbeddedBroker,
    free_port,
    open_broker,
)
from streams.kafka_probe import metadata_probe
from streams.tansu import BrokerError, pid_alive
from streams.topics import (
    DEAD_LETTERS,
    EVENTS,
    SUBJECT_EVENTS,
    TopicMismatchError,
    all_topic_specs,
    changelog_topic,
    create_topics,
    subject_key,
    table_specs,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

ROOT = Path(__file__).resolve().parents[2]


# -- helpers ---------------------------------------------------------------------------


def answers(port: int) -> bool:
    try:
        metadata_probe("127.0.0.1", port, timeout=0.5)
    except (OSError, ValueError):
        return False
    return True


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def read_line(proc: subprocess.Popen[str], timeout: float = 15.0) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        proc.kill()
        pytest.fail(f"child printed nothing within {timeout} s")
    return proc.stdout.readline()


def python_child(code: str, *args: str, new_session: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=new_session,
    )


def reap(pid: int | None) -> None:
    """Kill a broker a failed test may have orphaned (no-op if it is gone)."""
    if pid is not None and pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    return int(proc.stdout)


def write_pidfile(data_dir: Path, **record: object) -> None:
    (data_dir / "broker.pid").write_text(json.dumps(record))


# -- the broker itself -----------------------------------------------------------------


def test_broker_answers_on_loopback_in_its_own_process_group(broker: EmbeddedBroker) -> None:
    assert broker.running and broker.fresh
    host, port = broker.bootstrap.split(":")
    assert host == "127.0.0.1" and int(port) == broker.port
    cluster_id, brokers = metadata_probe("127.0.0.1", broker.port)
    assert cluster_id == broker.cluster_id
    assert brokers == [("127.0.0.1", broker.port)]
    assert broker.pid is not None
    assert os.getpgid(broker.pid) == broker.pid != os.getpgrp()  # no terminal Ctrl-C
    record = json.loads(broker.pid_path.read_text())
    assert record["pid"] == broker.pid and record["port"] == broker.port
    assert record["owner_pid"] == os.getpid() and record["started_at"]
    assert "ready in" in broker.log_path.read_text()


def test_broker_listens_on_loopback_only(broker: EmbeddedBroker) -> None:
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if not tables[0].exists():
        pytest.skip("needs /proc/net/tcp")
    listening = []
    for table in tables:
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, port = local.split(":")
            if state == "0A" and int(port, 16) == broker.port:  # 0A: LISTEN
                listening.append(addr)
    assert listening == ["0100007F"]  # 127.0.0.1, and nothing else


def test_stop_terminates_and_cleans_up(data_dir: Path) -> None:
    b = EmbeddedBroker(data_dir).start()
    pid, port = b.pid, b.port
    assert pid is not None and answers(port)
    with socket.create_connection(("127.0.0.1", port)):  # a client that never hangs up
        started = time.monotonic()
        b.stop()
        assert time.monotonic() - started < 1.0
    assert not b.running and wait_gone(pid) and not answers(port)
    assert not b.pid_path.exists()
    b.stop()  # twice is fine
    with EmbeddedBroker(data_dir) as again:  # lock released, nothing left over
        assert again.leftover is None
    assert (data_dir / "broker.log.1").exists()  # the previous run's log is kept


def test_second_broker_in_a_live_runs_data_dir_is_refused(data_dir: Path) -> None:
    with EmbeddedBroker(data_dir) as first:
        with pytest.raises(
            BrokerInUseError, match=rf"in use by a running govclock \(pid {os.getpid()}"
        ):
            EmbeddedBroker(data_dir).start()
        assert first.running and answers(first.port)  # the refusal touched nothing


def test_ctrl_c_in_the_owner_stops_the_broker(data_dir: Path) -> None:
    child = python_child(
        "import json, signal, sys, time\n"
        "from streams.broker import EmbeddedBroker\n"
        # a shell's background job inherits SIGINT ignored; a terminal's foreground does not
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "with EmbeddedBroker(sys.argv[1]) as b:\n"
        "    print(json.dumps({'pid': b.pid, 'port': b.port}), flush=True)\n"
        "    time.sleep(60)\n",
        str(data_dir),
        new_session=True,  # its own terminal-like process group, like a shell's job
    )
    info: dict[str, int] = {}
    try:
        info = json.loads(read_line(child))
        assert answers(info["port"])
        os.killpg(child.pid, signal.SIGINT)  # what Ctrl-C does to the foreground job
        child.wait(10)
    finally:
        child.kill()
        reap(info.get("pid"))
    assert wait_gone(info["pid"]) and not answers(info["port"])
    assert not (data_dir / "broker.pid").exists()


# -- leftovers of earlier runs ---------------------------------------------------------

CRASHER = (
    "import json, sys, time\n"
    "from streams.broker import EmbeddedBroker\n"
    "b = EmbeddedBroker(sys.argv[1], port=int(sys.argv[2])).start()\n"
    "print(json.dumps({'pid': b.pid, 'port': b.port, 'cluster': b.cluster_id}), flush=True)\n"
    "time.sleep(60)\n"
)


def test_leftover_broker_of_a_crashed_run_is_stopped(data_dir: Path) -> None:
    port = free_port()  # a fixed port: the new broker can only have it if the old one died
    child = python_child(CRASHER, str(data_dir), str(port))
    try:
        info = json.loads(read_line(child))
    finally:
        child.kill()  # SIGKILL: no cleanup at all
        child.wait(10)
    old_pid = info["pid"]
    try:
        assert pid_alive(old_pid), "the orphaned broker should outlive its owner"
        assert metadata_probe("127.0.0.1", port)[0] == info["cluster"]

        with EmbeddedBroker(data_dir, port=port) as b:
            assert b.leftover is not None
            assert b.leftover.startswith(f"stopped leftover broker pid {old_pid} on port {port}")
            assert not pid_alive(old_pid)
            assert metadata_probe("127.0.0.1", port)[0] == b.cluster_id != info["cluster"]
            assert json.loads(b.pid_path.read_text())["pid"] == b.pid
    finally:
        reap(old_pid)


def test_stale_pidfile_with_a_dead_pid_is_removed(data_dir: Path) -> None:
    pid = dead_pid()
    write_pidfile(data_dir, pid=pid, port=1, cluster_id="govclock-1-x", owner_pid=1)
    with EmbeddedBroker(data_dir) as b:
        assert b.leftover == f"removed stale pidfile {b.pid_path} (pid {pid} is gone)"
        assert json.loads(b.pid_path.read_text())["pid"] == b.pid


def test_pidfile_naming_someone_elses_process_never_kills_it(
    data_dir: Path, broker: EmbeddedBroker
) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        # a reused pid now running another program
        write_pidfile(data_dir, pid=sleeper.pid, port=1, cluster_id="govclock-1-x")
        with EmbeddedBroker(data_dir) as b:
            assert b.leftover is not None and "is not the broker it names" in b.leftover
        assert sleeper.poll() is None
        # a tansu, but not the one recorded (the session's broker)
        write_pidfile(data_dir, pid=broker.pid, port=broker.port, cluster_id="govclock-9-y")
        with EmbeddedBroker(data_dir) as b:
            assert b.leftover is not None and "is not the broker it names" in b.leftover
        assert broker.running and answers(broker.port)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_unreadable_pidfile_is_removed(data_dir: Path) -> None:
    (data_dir / "broker.pid").write_text("{not json")
    with EmbeddedBroker(data_dir) as b:
        assert b.leftover is not None and b.leftover.startswith("removed unreadable")


# -- failures to start -----------------------------------------------------------------


def test_binary_that_exits_gives_its_status_and_log(data_dir: Path, tmp_path: Path) -> None:
    bogus = script(tmp_path / "tansu", 'echo "boom: this is not a broker" >&2; exit 3')
    with pytest.raises(BrokerError) as err:
        EmbeddedBroker(data_dir, tansu_bin=bogus).start()
    message = str(err.value)
    assert "tansu exited with status 3 before it was ready" in message
    assert "boom: this is not a broker" in message and "broker.log" in message
    assert not (data_dir / "broker.pid").exists()
    with EmbeddedBroker(data_dir) as b:  # the failed start released everything
        assert b.running


def test_binary_that_never_answers_times_out_and_is_killed(data_dir: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "hang.pid"
    hang = script(tmp_path / "tansu", f"echo $$ > {pidfile}; exec sleep 30")
    started = time.monotonic()
    with pytest.raises(BrokerError, match=r"no answer within 0\.5 s"):
        EmbeddedBroker(data_dir, tansu_bin=hang, start_timeout=0.5).start()
    assert time.monotonic() - started < 5
    assert wait_gone(int(pidfile.read_text()))


def bad_binary(kind: str, where: Path) -> Path:
    path = where / kind
    if kind == "directory":
        path.mkdir()
    elif kind == "not-executable":
        path.write_text("#!/bin/sh\n")
    elif kind == "not-a-program":
        path.write_bytes(b"\x00\x01garbage")
        path.chmod(0o755)
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "no such file"),
        ("directory", "not a file"),
        ("not-executable", "not executable"),
        ("not-a-program", "cannot run tansu binary .*not-a-program"),
    ],
)
def test_bad_binary_override_is_a_clear_error(
    data_dir: Path, tmp_path: Path, kind: str, message: str
) -> None:
    with pytest.raises(BrokerError, match=message):
        EmbeddedBroker(data_dir, tansu_bin=bad_binary(kind, tmp_path)).start()
    assert not (data_dir / "broker.pid").exists()


def test_fixed_port_in_use_is_a_clear_error(data_dir: Path, broker: EmbeddedBroker) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(BrokerError, match=rf"port {port} is in use"):
            EmbeddedBroker(data_dir, port=port).start()
    with pytest.raises(BrokerError, match="in use"):  # taken by another Kafka broker
        EmbeddedBroker(data_dir, port=broker.port).start()


def test_auto_port_lost_to_a_race_is_retried(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        picks = iter([taken, free_port()])
        monkeypatch.setattr(broker_mod, "free_port", lambda: next(picks))
        with EmbeddedBroker(data_dir) as b:
            assert b.port != taken and answers(b.port)


# -- producing and consuming -----------------------------------------------------------


async def test_round_trip_aiokafka(broker: EmbeddedBroker, new_topic: Callable[..., str]) -> None:
    topic = new_topic(4)
    sent = [(f"k{i % 7}".encode(), json.dumps({"i": i}).encode()) for i in range(60)]
    async with asyncio.timeout(20):
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, request_timeout_ms=5000)
        await producer.start()
        try:
            for key, value in sent:
                await producer.send(topic, key=key, value=value)
            await producer.flush()
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            bootstrap_servers=broker.bootstrap, enable_auto_commit=False, group_id=None
        )
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, p) for p in range(4)])
            await consumer.seek_to_beginning()
            got: list[tuple[int, bytes, bytes]] = []
            while len(got) < len(sent):
                batches = await consumer.getmany(timeout_ms=500)
                for tp, records in batches.items():
                    got += [(tp.partition, r.key, r.value) for r in records]
        finally:
            await consumer.stop()
    assert sorted((k, v) for _, k, v in got) == sorted(sent)
    for key in {k for k, _ in sent}:  # per key: one partition, in the order sent
        assert len({p for p, k, _ in got if k == key}) == 1
        assert [v for _, k, v in got if k == key] == [v for k2, v in sent if k2 == key]


def test_round_trip_kafka_python(broker: EmbeddedBroker, new_topic: Callable[..., str]) -> None:
    topic = new_topic(4)
    sent = [(f"k{i % 5}".encode(), f"value {i}".encode()) for i in range(40)]
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap, request_timeout_ms=5000, max_block_ms=5000
    )
    try:
        futures = [producer.send(topic, key=k, value=v) for k, v in sent]
        producer.flush(10)
        placed = [f.get(timeout=5) for f in futures]
    finally:
        producer.close(5)
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        request_timeout_ms=5000,
    )
    try:
        consumer.assign([KTopicPartition(topic, p) for p in range(4)])
        consumer.seek_to_beginning()
        got = []
        deadline = time.monotonic() + 15
        while len(got) < len(sent) and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                got += [(tp.partition, r.offset, r.key, r.value) for r in records]
    finally:
        consumer.close()
    assert sorted((k, v) for _, _, k, v in got) == sorted(sent)
    assert sorted((p, o) for p, o, _, _ in got) == sorted((m.partition, m.offset) for m in placed)


async def test_same_key_same_partition_across_clients(
    broker: EmbeddedBroker, new_topic: Callable[..., str]
) -> None:
    partitions = 4
    topic = new_topic(partitions)
    keys = [subject_key("incident_id", f"I-2026-{n:03}") for n in range(24)]
    keys += [subject_key("document_id", "沪府办〔2026〕12号"), subject_key("unit", "sh-gov")]
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, max_block_ms=5000)
    try:
        for key in keys:
            producer.send(topic, key=key.encode(), value=b"kafka-python")
        producer.flush(10)
    finally:
        producer.close(5)
    async with asyncio.timeout(20):
        aio = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await aio.start()
        try:
            for key in keys:
                await aio.send(topic, key=key.encode(), value=b"aiokafka")
            await aio.flush()
        finally:
            await aio.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
            await consumer.seek_to_beginning()
            seen: dict[str, set[int]] = {}
            count = 0
            while count < 2 * len(keys):
                for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                    for r in records:
                        assert r.key is not None
                        seen.setdefault(r.key.decode(), set()).add(tp.partition)
                        count += 1
        finally:
            await consumer.stop()
    for key in keys:  # one partition per key, the one Java's partitioner picks too
        expected = (murmur2(key.encode()) & 0x7FFFFFFF) % partitions
        assert seen[key] == {expected}, key
    assert len(set().union(*seen.values())) == partitions


# -- topics ----------------------------------------------------------------------------


def test_create_topics_is_idempotent_with_the_declared_partitions(
    broker: EmbeddedBroker,
) -> None:
    specs = all_topic_specs(partitions=4)
    names = [s.name for s in specs]
    assert changelog_topic("subjects") in names and len(set(names)) == len(names)
    first = create_topics(broker.bootstrap, specs)
    assert first == dict.fromkeys(names, "created")
    second = create_topics(broker.bootstrap, specs)
    assert second == dict.fromkeys(names, "exists")

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=5000)
    try:
        described = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(names)}
    finally:
        admin.close()
    assert described == {s.name: s.partitions for s in specs}
    assert described[EVENTS] == described[SUBJECT_EVENTS] == 4 and described[DEAD_LETTERS] == 1
    for table in table_specs():  # a changelog is partitioned like its table's source
        assert described[table.changelog] == described[table.source]

    with pytest.raises(TopicMismatchError, match=r"govclock-[a-z-]+ has 4 partitions.*declares 8"):
        create_topics(broker.bootstrap, all_topic_specs(partitions=8))


# -- settings and choosing a broker ----------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith("GOVCLOCK_") or name in ("KAFKA_BROKER", "CALF_TANSU_BIN"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_settings_defaults_are_local(clean_env: Path) -> None:
    s = load_settings()
    assert s.embedded and s.kafka_broker is None
    assert (s.web_host, s.web_port, s.partitions, s.embedded_broker_port) == (
        "127.0.0.1",
        6066,
        4,
        0,
    )
    assert s.data_dir == Path("var")
    assert all(value.endswith("(default)") for _, value in s.describe())


def test_settings_from_env_and_dotenv(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / ".env").write_text(
        "KAFKA_BROKER=kafka://kafka-0.kafka:9092, kafka-1.kafka:9092\n"
        "GOVCLOCK_PARTITIONS=8\nGOVCLOCK_WEB_PORT=7000\nTWILIO_ACCOUNT_SID=ignored\n"
    )
    monkeypatch.setenv("GOVCLOCK_WEB_PORT", "7100")  # the environment wins over .env
    monkeypatch.setenv("CALF_TANSU_BIN", "/opt/tansu")
    monkeypatch.setenv("GOVCLOCK_CALENDAR_FILES", "a.yaml, b.yaml")
    monkeypatch.setenv("GOVCLOCK_LOG_LEVEL", "debug")
    s = load_settings()
    assert s.bootstrap_servers == ["kafka-0.kafka:9092", "kafka-1.kafka:9092"]
    assert (s.partitions, s.web_port, s.log_level) == (8, 7100, "DEBUG")
    assert s.tansu_bin == Path("/opt/tansu")
    assert s.calendar_files == (Path("a.yaml"), Path("b.yaml"))
    shown = dict(s.describe())
    assert shown["KAFKA_BROKER"] == "kafka-0.kafka:9092,kafka-1.kafka:9092"
    assert shown["GOVCLOCK_DATA_DIR"] == "var (default)"


def test_settings_errors_name_the_variable(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BROKER", "localhost")
    monkeypatch.setenv("GOVCLOCK_WEB_PORT", "http")
    monkeypatch.setenv("GOVCLOCK_PARTITION", "4")
    with pytest.raises(SettingsError) as err:
        load_settings()
    text = str(err.value)
    assert "KAFKA_BROKER='localhost': 'localhost' is not host:port" in text
    assert "GOVCLOCK_WEB_PORT='http': Input should be a valid integer" in text
    assert "GOVCLOCK_PARTITION: not a govclock setting; did you mean GOVCLOCK_PARTITIONS?" in text


def test_open_broker_uses_a_configured_cluster_as_is(tmp_path: Path) -> None:
    settings = Settings(kafka_broker="kafka:9092", data_dir=tmp_path / "var")
    with open_broker(settings) as endpoint:
        assert (endpoint.bootstrap, endpoint.embedded, endpoint.fresh) == (
            "kafka:9092",
            False,
            False,
        )
    assert not (tmp_path / "var").exists()  # nothing started, nothing written


def test_open_broker_starts_an_embedded_one_when_none_is_configured(data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir)
    with open_broker(settings) as endpoint:
        assert endpoint.embedded and endpoint.fresh
        assert answers(int(endpoint.bootstrap.rsplit(":", 1)[1]))
    assert not answers(int(endpoint.bootstrap.rsplit(":", 1)[1]))
