"""/datasets: list stored datasets; upload an OHLCV CSV or a ready dataset parquet."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, HTTPException, Query, UploadFile, status
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

from app.api.deps import SettingsDep
from app.api.models import DatasetPublic, DatasetsPublic, ErrorPublic
from core.dataset_files import DatasetLimits
from core.datasets import import_dataset_parquet, import_ohlcv_csv, import_to_store, list_stored_datasets
from core.names import SafeName

router = APIRouter(prefix="/datasets", tags=["datasets"])

PARQUET_MAGIC = b"PAR1"


def _public(info: object) -> DatasetPublic:
    data = info.to_dict()  # type: ignore[attr-defined]
    return DatasetPublic(**{k: data[k] for k in DatasetPublic.model_fields})


@router.get("", response_model=DatasetsPublic, summary="Datasets in the store")
def get_datasets(settings: SettingsDep) -> DatasetsPublic:
    """The data root's datasets, or the object store's (fetched to this machine once per fingerprint)."""
    infos = list_stored_datasets(settings.store())
    return DatasetsPublic(data=[_public(i) for i in infos], count=len(infos))


@router.post(
    "/{asset}",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetPublic,
    responses={
        409: {"model": ErrorPublic, "description": "The asset has a dataset and `replace` was not asked."},
        413: {
            "model": ErrorPublic,
            "description": "The upload's bytes, or its rows, columns or decoded bytes (counted before decoding), "
            "are over the server's limits; the message names the count, the cap and its setting.",
        },
        422: {"model": ErrorPublic, "description": "Bad asset name or bad data; the message says what."},
    },
    summary="Upload a daily OHLCV CSV (built like `tftsweep dataset import`) or a ready dataset parquet",
)
async def upload_dataset(
    asset: Annotated[SafeName, PathParam(description="Asset symbol (a safe name).")],
    settings: SettingsDep,
    file: Annotated[
        UploadFile,
        File(
            description="CSV with Date, Open, High, Low, Close, Volume[, Adj Close], "
            "or a parquet with date, asset, target and features."
        ),
    ],
    replace: Annotated[
        bool, Query(description="Replace the asset's dataset (409 without it when one exists).")
    ] = False,
) -> DatasetPublic:
    data = await file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"upload larger than {settings.max_upload_bytes} bytes")
    origin = f"upload:{file.filename or 'unnamed'}"
    importer = import_dataset_parquet if data[:4] == PARQUET_MAGIC else import_ohlcv_csv
    limits = DatasetLimits(settings.max_dataset_rows, settings.max_dataset_columns, settings.max_dataset_bytes)
    # Decoding and validating take CPU: on a worker thread (of the API's bounded pool), never
    # on the event loop, where they would stall every other request until done.
    info = await run_in_threadpool(
        import_to_store,
        settings.store(),
        asset,
        lambda root: importer(root, asset, data, origin=origin, replace=replace, limits=limits),
    )
    return _public(info)
