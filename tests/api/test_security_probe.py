"""Every route against the outside probe: keys, scopes, cross-site requests and foreign hosts, then
one regression test per row of what the probe broke (docs/operations.md lists the rules)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from core.datasets import dataset_path, synthetic_ohlcv
from core.store import LocalStore
from tests.utils.data import ASSET, tiny_fold, tiny_sweep
from tests.utils.fakes import RecordingQueue
from tests.utils.server import api_client, finish_runs, server_settings

READ_KEY = "probe-read-key-0123456789"
WRITE_KEY = "probe-write-key-0123456789"
FOREIGN = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
FORM = {"content-type": "application/x-www-form-urlencoded"}


def operations(client: TestClient) -> list[tuple[str, str]]:
    """Every operation of the OpenAPI schema, with sample path parameters."""
    out = []
    for template, ops in client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        path = template.replace("{sweep_id}", "1").replace("{study_id}", "1")
        path = path.replace("{name}", "x.png").replace("{file}", "summary.json").replace("{asset}", ASSET)
        out += [(method.upper(), path) for method in ops]
    return out


@pytest.fixture
def keyed(root: Path, queue: RecordingQueue) -> Iterator[TestClient]:
    settings = server_settings(root, api_keys=f"read:{READ_KEY},write:{WRITE_KEY}")
    with api_client(create_app(settings, queue=queue, reaper=False)) as client:
        yield client


def test_every_route_against_keys_scopes_sites_and_hosts(keyed: TestClient, client: TestClient) -> None:
    found = operations(keyed)
    writes = [(m, p) for m, p in found if m not in ("GET", "HEAD")]
    assert len(found) >= 29 and len(writes) >= 8
    for method, path in found:
        no_key = keyed.request(method, path)
        assert no_key.status_code == (200 if path == "/healthz" else 401), (method, path)
        foreign_host = keyed.request(method, path, headers={"Host": "evil.example", "X-API-Key": WRITE_KEY})
        assert foreign_host.status_code == 400, (method, path)  # DNS rebinding: a name of another site
        assert client.request(method, path, headers={"Host": "evil.example:8000"}).status_code == 400
    for method, path in writes:
        read_key = keyed.request(method, path, headers={"X-API-Key": READ_KEY})
        assert read_key.status_code == 403, (method, path)
        # A keyless server: an HTML form on another site posting here.
        form = client.request(method, path, headers={**FOREIGN, **FORM}, content=b"a=1")
        assert form.status_code == 403 and "cross-site" in form.json()["detail"], (method, path)


# -- 1. a study's storage is the server's choice --------------------------------------------


def test_1_a_study_cannot_name_a_storage_url(client: TestClient, root: Path, queue: RecordingQueue) -> None:
    for url in ("sqlite:////some/where/else.db", "postgresql+psycopg://x:y@any-host/db"):
        config = {
            **tiny_sweep(output_subdir="s"),
            "search_space": {"hidden_size": {"type": "int", "low": 4, "high": 8}},
        }
        config.pop("param_ranges")
        response = client.post("/hpo", json={"asset": ASSET, "config": config | {"storage": url}})
        assert response.status_code == 422
        assert [p["field"] for p in response.json()["detail"]] == ["config.storage"]
    assert queue.studies == [] and not Path("/some/where/else.db").exists()


# -- 2. names ending in a newline ------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"asset": ASSET, "config": tiny_sweep(output_subdir="out\n")},
        {"asset": "MSFT\n", "config": tiny_sweep()},
        {"asset": ASSET, "config": tiny_sweep(walk_forward={"enabled": True, "folds": [tiny_fold("f\n")]})},
        {"asset": ASSET, "config": tiny_sweep(configs=[{"name": "c\n", "params": {"hidden_size": 5}}])},
    ],
    ids=["output_subdir", "asset", "fold", "config"],
)
def test_2_names_with_a_trailing_newline_are_refused(client: TestClient, root: Path, body: dict[str, Any]) -> None:
    response = client.post("/sweeps", json=body)
    assert response.status_code == 422
    assert "may hold only letters" in json.dumps(response.json())
    assert not any("\n" in p.name for p in root.rglob("*"))


def test_2_an_upload_to_a_name_with_a_newline_is_refused(client: TestClient, root: Path) -> None:
    csv = synthetic_ohlcv(300).rename(columns=str.title).to_csv(index=False).encode()
    response = client.post("/datasets/MSFT%0A", files={"file": ("m.csv", csv, "text/csv")})
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == "asset"
    assert not any("\n" in p.name for p in root.rglob("*"))


# -- 3. cross-site requests and foreign hosts on a keyless server ----------------------------


def test_3_another_site_cannot_cancel_upload_or_rebind(client: TestClient, root: Path) -> None:
    sweep_id = client.post("/sweeps", json={"asset": ASSET, "config": tiny_sweep()}).json()["id"]
    form = client.post(f"/sweeps/{sweep_id}/cancel", headers={**FOREIGN, **FORM}, content=b"x=1")
    assert form.status_code == 403
    assert client.get(f"/sweeps/{sweep_id}").json()["status"] == "queued"  # not cancelled
    before = dataset_path(root, ASSET).read_bytes()
    csv = synthetic_ohlcv(300).rename(columns=str.title).to_csv(index=False).encode()
    upload = client.post(
        f"/datasets/{ASSET}?replace=true", files={"file": ("x.csv", csv)}, headers={"Origin": "http://evil.example"}
    )
    assert upload.status_code == 403 and dataset_path(root, ASSET).read_bytes() == before
    assert client.get("/sweeps", headers={"Host": "attacker.example"}).status_code == 400
    # A JSON route takes JSON only: a form from anywhere is refused before it is read.
    assert client.post(f"/sweeps/{sweep_id}/cancel", headers=FORM, content=b"x=1").status_code == 415
    # Same-origin pages (the dashboard) and clients that send no Origin (curl) work.
    own = client.post(
        f"/sweeps/{sweep_id}/cancel", headers={"Origin": "http://127.0.0.1", "Sec-Fetch-Site": "same-origin"}
    )
    assert own.status_code == 200


# -- 4. without keys, loopback only, however the app was started -----------------------------


def test_4_a_keyless_app_refuses_requests_on_other_addresses(root: Path, queue: RecordingQueue) -> None:
    settings = server_settings(root, allowed_hosts="10.9.8.7")
    with TestClient(create_app(settings, queue=queue, reaper=False), base_url="http://10.9.8.7") as remote:
        response = remote.get("/sweeps")  # the connection arrived on 10.9.8.7 (the ASGI scope's server)
        assert response.status_code == 403 and "only on loopback addresses" in response.json()["detail"]
    keyed = server_settings(root, allowed_hosts="10.9.8.7", api_keys=f"read:{READ_KEY}")
    with TestClient(create_app(keyed, queue=queue, reaper=False), base_url="http://10.9.8.7") as remote:
        assert remote.get("/sweeps", headers={"X-API-Key": READ_KEY}).status_code == 200


# -- 5 and 6. files read through links, and unreadable files ---------------------------------


def finished_sweep(client: TestClient, root: Path) -> tuple[int, Path]:
    from app.service.reports import build_reports

    sweep_id = client.post("/sweeps", json={"asset": ASSET, "config": tiny_sweep()}).json()["id"]
    ids = [r["run_id"] for r in client.get(f"/sweeps/{sweep_id}/runs").json()["data"]]
    factory = client.app.state.session_factory  # type: ignore[attr-defined]
    finish_runs(factory, {ids[0]: 0.01, ids[1]: 0.011})
    build_reports(factory, LocalStore(root), sweep_id, builder="probe", plots=False)
    return sweep_id, root / "models" / ASSET / "sweeps" / "tiny"


def test_5_a_summary_linked_outside_the_data_root_is_not_read(client: TestClient, root: Path, tmp_path: Path) -> None:
    sweep_id, folder = finished_sweep(client, root)
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"drift": {"stolen": "top secret"}}))
    (folder / "summary.json").unlink()
    (folder / "summary.json").symlink_to(secret)
    response = client.get(f"/sweeps/{sweep_id}/summary")
    assert response.status_code == 200 and "top secret" not in response.text
    assert client.get(f"/sweeps/{sweep_id}/artifacts/summary.json").status_code == 404


@pytest.mark.parametrize("content", [b'{"drift": {"avail', b"\xff\xfe\x00garbage", b"[1, 2, 3]"])
def test_6_an_unreadable_summary_is_a_409_not_a_500(client: TestClient, root: Path, content: bytes) -> None:
    sweep_id, folder = finished_sweep(client, root)
    (folder / "summary.json").write_bytes(content)
    response = client.get(f"/sweeps/{sweep_id}/summary")
    assert response.status_code == 409
    assert "POST /sweeps/{id}/regenerate" in response.json()["detail"]
    assert str(root) not in response.json()["detail"]  # paths relative to the data root


# -- 7. concurrent merges --------------------------------------------------------------------


def test_7_concurrent_merges_of_one_sweep_never_fail(client: TestClient, queue: RecordingQueue) -> None:
    assert client.post("/sweeps", json={"asset": ASSET, "config": tiny_sweep()}).status_code == 201
    merge = {"asset": ASSET, "config": tiny_sweep(param_ranges={"hidden_size": [4, 6, 8]}), "merge_tests": True}
    answers: list[Any] = []

    def post() -> None:
        answers.append(client.post("/sweeps", json=merge))

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(a.status_code for a in answers) == [202, 202, 202, 202]
    assert sorted(a.json()["new_runs"] for a in answers) == [0, 0, 0, 1]  # one merge added the run
    assert client.get("/sweeps/1").json()["total_runs"] == 3


# -- 8. cancel of a finished sweep -----------------------------------------------------------


def test_8_cancelling_a_finished_sweep_is_a_409_and_changes_nothing(client: TestClient, root: Path) -> None:
    sweep_id, _ = finished_sweep(client, root)
    before = client.get(f"/sweeps/{sweep_id}").json()
    response = client.post(f"/sweeps/{sweep_id}/cancel")
    assert response.status_code == 409 and "nothing to cancel" in response.json()["detail"]
    after = client.get(f"/sweeps/{sweep_id}").json()
    assert (after["status"], after["runs"]) == ("succeeded", before["runs"])


# -- 9. media types ---------------------------------------------------------------------------


def test_9_the_depth_limit_applies_whatever_the_media_types_case(client: TestClient, queue: RecordingQueue) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    for media in ("Application/Json", "APPLICATION/JSON; charset=utf-8"):
        response = client.post("/sweeps", content=deep, headers={"content-type": media})
        assert response.status_code == 422 and "nested deeper" in response.json()["detail"], media
    assert queue.runs == []


# -- 10. dashboard headers -------------------------------------------------------------------


@pytest.mark.parametrize(
    "page",
    ["/ui", "/ui/submit", "/ui/workers", "/ui/sweeps/1", "/ui/static/app.js", "/docs", "/docs/static/swagger-ui.css"],
)
def test_10_dashboard_responses_carry_security_headers(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert client.get("/sweeps").headers["x-content-type-options"] == "nosniff"


# -- 11. report folders linked outside the data root -----------------------------------------


@pytest.mark.parametrize("linked", ["plots", "folds/f1", "folds/f1/plots"])
def test_11_regenerate_never_writes_through_a_link_out(
    client: TestClient, root: Path, tmp_path: Path, linked: str
) -> None:
    from app.service.reports import build_reports
    from core.errors import UnsafePath

    sweep_id, folder = finished_sweep(client, root)
    outside = tmp_path / "outside"
    outside.mkdir()
    target = folder / linked
    if target.exists():
        import shutil

        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(outside, target_is_directory=True)
    response = client.post(f"/sweeps/{sweep_id}/regenerate")
    assert response.status_code == 409 and "leads outside" in response.json()["detail"]
    with pytest.raises(UnsafePath):  # the build itself refuses too (a message already queued)
        build_reports(client.app.state.session_factory, LocalStore(root), sweep_id, builder="probe")  # type: ignore[attr-defined]
    assert list(outside.iterdir()) == []


# -- 12. error messages and the server's paths -----------------------------------------------


def test_12_an_asset_without_a_dataset_names_no_server_path(client: TestClient, root: Path) -> None:
    response = client.post("/sweeps", json={"asset": "NODATA", "config": tiny_sweep()})
    assert response.status_code == 422
    message = response.json()["detail"][0]["message"]
    assert "processed/dataset_tft/NODATA/dataset_tft_NODATA.parquet" in message and str(root) not in message


# -- also noticed ----------------------------------------------------------------------------


def test_uploading_over_a_dataset_needs_replace(client: TestClient, root: Path) -> None:
    csv = synthetic_ohlcv(300, seed=4).rename(columns=str.title).to_csv(index=False).encode()
    before = dataset_path(root, ASSET).read_bytes()
    refused = client.post(f"/datasets/{ASSET}", files={"file": ("x.csv", csv)})
    assert refused.status_code == 409 and "replace=true" in refused.json()["detail"]
    assert dataset_path(root, ASSET).read_bytes() == before
    assert client.post(f"/datasets/{ASSET}?replace=true", files={"file": ("x.csv", csv)}).status_code == 201
    assert dataset_path(root, ASSET).read_bytes() != before


def test_written_files_are_readable_by_other_users(client: TestClient, root: Path) -> None:
    _, folder = finished_sweep(client, root)
    umask = os.umask(0)
    os.umask(umask)
    for path in (folder / "summary.json", folder / "config_ranking.csv", dataset_path(root, ASSET)):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


def test_a_study_can_be_cancelled_and_its_trials_are_paged(client: TestClient, root: Path) -> None:
    config = {**tiny_sweep(output_subdir="s"), "search_space": {"hidden_size": {"type": "int", "low": 4, "high": 8}}}
    config.pop("param_ranges")
    study_id = client.post("/hpo", json={"asset": ASSET, "config": config}).json()["id"]
    trials = [{"number": i, "state": "complete", "value": 0.01 + i} for i in range(7)]
    folder = root / "models" / ASSET / "optuna" / "s"
    folder.mkdir(parents=True)
    (folder / "optuna_trials.json").write_text(json.dumps(trials))
    page = client.get(f"/hpo/{study_id}/trials", params={"limit": 3, "offset": 2}).json()
    assert page["count"] == 7 and [t["number"] for t in page["data"]] == [2, 3, 4]
    cancelled = client.post(f"/hpo/{study_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert client.post(f"/hpo/{study_id}/cancel").status_code == 409
