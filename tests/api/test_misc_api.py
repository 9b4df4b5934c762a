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
        ("../x", b"Date\n", "asset", "path separators"),
        ("BAD", b"PAR1garbage", "file", "cannot read the parquet"),
    ],
)
def test_bad_uploads_are_422(client: TestClient, asset: str, content: bytes, field: str, needle: str) -> None:
    response = client.post(f"/datasets/{asset}", files={"file": ("f", content)})
    if asset.startswith(".."):
        assert response.status_code == 404  # the path itself does not match the route
        return
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["field"] == field and needle in problem["message"]
    assert client.get("/datasets").json()["count"] == 1


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "database": "ok", "broker": "ok"}


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
    }
    assert expected <= set(paths)
    for path in expected:
        for operation in paths[path].values():
            assert operation.get("summary"), path
