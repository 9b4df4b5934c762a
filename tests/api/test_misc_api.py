"""/datasets, /healthz and the OpenAPI document."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from core.datasets import synthetic_dataset, synthetic_ohlcv


def test_list_datasets(client: TestClient) -> None:
    body = client.get("/datasets").json()
    assert body["count"] == 1
    assert body["data"][0]["asset"] == "SYN" and "rsi_14" in body["data"][0]["columns"]


def test_upload_csv_builds_a_dataset(client: TestClient) -> None:
    csv = synthetic_ohlcv(300).rename(columns=str.title).to_csv(index=False).encode()
    response = client.post("/datasets/NEW", files={"file": ("new.csv", csv, "text/csv")})
    assert response.status_code == 201, response.text
    assert response.json()["rows"] == 237
    assert {d["asset"] for d in client.get("/datasets").json()["data"]} == {"SYN", "NEW"}


def test_upload_parquet(client: TestClient) -> None:
    data = synthetic_dataset("PQ", n_days=300).to_parquet(index=False)
    response = client.post("/datasets/PQ", files={"file": ("pq.parquet", data, "application/octet-stream")})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("asset", "content", "field", "needle"),
    [
        ("BAD", b"Date,Open\n2020-01-01,1\n", "file", "missing columns"),
        # Percent-encoded so the HTTP client sends them as written (it normalises a plain `..`).
        ("..%5Cx", b"Date\n", "asset", "path separators"),
        ("%2E%2E", b"Date\n", "asset", "must not start with a dot"),
        ("BAD", b"PAR1garbage", "file", "cannot read the parquet"),
    ],
)
def test_bad_uploads_are_422(client: TestClient, asset: str, content: bytes, field: str, needle: str) -> None:
    response = client.post(f"/datasets/{asset}", files={"file": ("f", content)})
    assert response.url.raw_path == f"/datasets/{asset}".encode()  # the handler got it as written
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["field"] == field and needle in problem["message"]
    assert client.get("/datasets").json()["count"] == 1


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {
        "status": "ok",
        "database": "ok",
        "broker": "ok",
        "live_workers": 0,
        "queued_runs": 0,
        "detail": None,
    }
    assert client.head("/healthz").status_code == 200


def test_healthz_is_degraded_while_queued_runs_have_no_live_worker(client: TestClient) -> None:
    from app.db.session import session_scope
    from app.db.workers import WorkerIdentity, heartbeat, mark_stopped, register_worker
    from tests.utils.data import tiny_sweep

    assert client.post("/sweeps", json={"asset": "SYN", "config": tiny_sweep()}).status_code == 201
    response = client.get("/healthz")
    assert response.status_code == 200  # the API itself is fine
    assert response.json()["status"] == "degraded" and response.json()["queued_runs"] == 2
    assert "no worker has been seen" in response.json()["detail"]

    factory = client.app.state.session_factory  # type: ignore[attr-defined]
    worker = WorkerIdentity(
        host="gpu-box", pid=4242, name="tftsweep-gpu0@gpu-box", queues=("gpu",), concurrency=2, gpu="0"
    )
    with session_scope(factory) as session:
        register_worker(session, worker)
        heartbeat(session, worker)
    assert client.get("/healthz").json()["status"] == "ok"
    listed = client.get("/workers").json()
    assert (listed["count"], listed["live"]) == (1, 1)
    (row,) = listed["data"]
    assert (row["id"], row["queues"], row["gpu"], row["concurrency"], row["live"]) == (
        "gpu-box:4242",
        ["gpu"],
        "0",
        2,
        True,
    )
    with session_scope(factory) as session:
        mark_stopped(session, worker.id)
    assert client.get("/workers").json()["data"][0]["live"] is False
    assert client.get("/healthz").json()["status"] == "degraded"


def test_healthz_reports_a_dead_broker(client: TestClient) -> None:
    class DeadQueue:
        def ping(self) -> None:
            raise ConnectionError("down")

    client.app.state.queue = DeadQueue()  # type: ignore[attr-defined]
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["broker"] == "error: ConnectionError"


def test_openapi_lists_every_endpoint(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    expected = {
        "/sweeps",
        "/sweeps/{sweep_id}",
        "/sweeps/{sweep_id}/runs",
        "/sweeps/{sweep_id}/ranking",
        "/sweeps/{sweep_id}/param-impact",
        "/sweeps/{sweep_id}/drift",
        "/sweeps/{sweep_id}/summary",
        "/sweeps/{sweep_id}/plots",
        "/sweeps/{sweep_id}/plots/{name}",
        "/sweeps/{sweep_id}/artifacts/{file}",
        "/sweeps/{sweep_id}/regenerate",
        "/sweeps/{sweep_id}/cancel",
        "/sweeps/{sweep_id}/retry",
        "/datasets",
        "/datasets/{asset}",
        "/healthz",
        "/workers",
    }
    assert expected <= set(paths)
    for path in expected:
        for operation in paths[path].values():
            assert operation.get("summary"), path
