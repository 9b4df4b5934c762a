"""The embedded broker under load: whole messages only, none lost, none twice, bad files set aside."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import time
from pathlib import Path
from typing import Any

import pytest
from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from kombu.messaging import Consumer, Producer

from app.queue import celery_config
from tests.utils.server import server_settings

PRODUCERS = 4
PER_PRODUCER = 5_000
QUEUE = Queue("gpu", Exchange("gpu", type="direct"), routing_key="gpu")


def connection(root: Path) -> Connection:
    """A kombu connection with exactly the transport and options the product uses."""
    config = celery_config(server_settings(root))
    return Connection(config["broker_url"], transport_options=config["broker_transport_options"])


def produce(root: str, producer: int, count: int) -> None:
    with connection(Path(root)) as conn:
        publish = Producer(conn.default_channel).publish
        for seq in range(count):
            publish({"producer": producer, "seq": seq}, exchange=QUEUE.exchange, routing_key="gpu", declare=[QUEUE])


def drain(root: Path, expected: int, timeout: float) -> list[tuple[int, int]]:
    """Consume until `expected` messages arrived (or `timeout`), polling as the worker does."""
    received: list[tuple[int, int]] = []

    def on_message(body: dict[str, Any], message: Any) -> None:
        received.append((body["producer"], body["seq"]))
        message.ack()

    deadline = time.monotonic() + timeout
    with connection(root) as conn, Consumer(conn, [QUEUE], callbacks=[on_message], accept=["json"]):
        while len(received) < expected and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=1)
    return received


def test_concurrent_producers_lose_nothing_and_deliver_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "data"
    spawn = multiprocessing.get_context("spawn")
    producers = [spawn.Process(target=produce, args=(str(root), i, PER_PRODUCER)) for i in range(PRODUCERS)]
    with caplog.at_level(logging.ERROR, logger="tftsweep.broker"):
        produce(str(root), -1, 0)  # declare the queue before the consumer starts
        for proc in producers:
            proc.start()
        received = drain(root, PRODUCERS * PER_PRODUCER, timeout=240)
        for proc in producers:
            proc.join(timeout=60)
    assert [proc.exitcode for proc in producers] == [0] * PRODUCERS  # no producer failed to publish
    assert len(received) == PRODUCERS * PER_PRODUCER  # none lost
    assert len(set(received)) == len(received)  # none delivered twice
    assert set(received) == {(p, s) for p in range(PRODUCERS) for s in range(PER_PRODUCER)}
    assert caplog.records == []  # no malformed message seen
    broker = root / "broker"
    assert list((broker / "bad").iterdir()) == []
    assert list((broker / "queue").iterdir()) == [] and list((broker / "processed").iterdir()) == []


def test_malformed_files_are_set_aside_and_consumption_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "data"
    produce(str(root), 0, 0)
    queue = root / "broker" / "queue"
    (queue / "00000000000000000001_empty.gpu.msg").write_bytes(b"")
    (queue / "00000000000000000002_garbage.gpu.msg").write_bytes(b"\xff{not json")
    (queue / "00000000000000000003_list.gpu.msg").write_bytes(b"[1, 2]")
    produce(str(root), 0, 3)
    with caplog.at_level(logging.ERROR, logger="tftsweep.broker"):
        received = drain(root, 3, timeout=30)
    assert received == [(0, 0), (0, 1), (0, 2)]
    bad = sorted(p.name for p in (root / "broker" / "bad").iterdir())
    assert bad == [
        "00000000000000000001_empty.gpu.msg",
        "00000000000000000002_garbage.gpu.msg",
        "00000000000000000003_list.gpu.msg",
    ]
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert all(name in logged for name in bad)
