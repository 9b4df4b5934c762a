"""Where datasets, model versions, sweep folders and study folders live (docs/architecture.md).

`Store` is what the rest of the code asks of them, by name (`fetch_dataset(asset)`,
`publish_version(asset, output_subdir, fold, version)`, ...), never by folder; the folders
come from `core.paths` alone. Two implementations:

`LocalStore` is the data root on the local disk: what the layout always was. Nothing moves
(fetching says whether the folder is there, publishing does nothing), and reads go to the disk.

`ObjectStore` (`TFTSWEEP_STORE_URL=s3://bucket/prefix`, through s3fs) keeps the same
relative layout in object storage. Each machine's data root is then its working copy and
cache: a worker downloads a dataset once per fingerprint, trains into its own disk,
uploads the model version once and removes its copy (`drop_local_version`); a report build
downloads what the other machines published, writes the reports locally and uploads them; the
API streams files from the store. s3fs reads the usual AWS variables (`AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL` for S3-compatible servers
such as MinIO).

Publishing is atomic for readers: a folder's objects go first and its manifest
(`_manifest.json`: each file's size and sha256) last. A folder without a manifest does
not exist for readers (a model version whose upload died half-way is removed later, by
`drop_unpublished_versions`), and every file read is checked against the manifest, so a
reader never mixes two versions of a folder.

This module is the only one that builds object keys: the rest of the code speaks of assets,
sweeps and versions, and the API of paths under the data root.

One job, where the files live, over 500 lines because it holds the protocol and both of its
implementations side by side (the contract suite checks them against each other); the S3
one carries the manifest protocol above, which no other module should know.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from core.errors import StoreError
from core.files import FILE_MODE, file_sha256, write_bytes_atomic
from core.paths import (
    FOLDS,
    LEGACY_PREDICTIONS_FILE,
    PREDICTIONS_FILE,
    VERSIONS,
    dataset_dir,
    datasets_dir,
    ensure_inside,
    hpo_dir,
    in_versions,
    owning_version,
    publishing_folders,
    resolve_inside,
    sweep_dir,
    version_folder,
)

MANIFEST = "_manifest.json"
CHUNK = 1 << 20
# What a report build needs of each model version (not the checkpoint or dataset parameters):
# the forecasts too, which every metric is scored from again when the evaluation changes.
VERSION_REPORT_FILES = ("metrics.json", "run.json", "config.json", LEGACY_PREDICTIONS_FILE, PREDICTIONS_FILE)
# What rebuilding or comparing a sweep reads of its folder (core.sweep_folder).
SWEEP_INPUT_FILES = ("analysis_config.json", "sweep_runs.json")


@dataclass(frozen=True)
class StoredFile:
    """A file as the API serves it: a local path, or the object's chunks and size."""

    size: int
    path: Path | None = None
    chunks: Iterator[bytes] | None = None


class Store(Protocol):
    """Datasets, sweeps, model versions and studies, where this machine's code reads them.

    Every `fetch_*` brings what is published to this machine's data root (`root`), where the
    caller then reads it, and says whether the store has it; every `publish_*` makes what the
    caller wrote there visible to every machine. A dataset or study folder is published as one,
    a model version alone, a sweep's own files (`publish_sweep_reports`) without its versions.
    """

    @property
    def root(self) -> Path:
        """This machine's data root: the store itself on the local disk, else its working copy."""

    @property
    def remote(self) -> bool:
        """Whether files move between this machine and the store (an object store)."""

    @property
    def url(self) -> str | None:
        """The object store's URL (`s3://bucket/prefix`); None on the local disk."""

    # -- datasets --------------------------------------------------------------------------------

    def datasets(self) -> list[str]:
        """Assets with a published dataset, sorted."""

    def fetch_dataset(self, asset: str) -> bool:
        """Bring `asset`'s dataset (once per fingerprint) to this machine; False when it has none.

        Raises:
            DatasetError: `asset` is no safe name.
            StoreError: the object store failed.
        """

    def fetch_datasets(self) -> list[str]:
        """Bring every published dataset to this machine; their assets, sorted."""

    def publish_dataset(self, asset: str) -> None:
        """Make `asset`'s dataset, as written under the data root, the one readers get."""

    # -- sweeps and their model versions ---------------------------------------------------------

    def fetch_sweep_inputs(self, asset: str, output_subdir: str) -> bool:
        """Bring the sweep's `SWEEP_INPUT_FILES` (what adopting, rebuilding or comparing it
        reads); False when the store has no such sweep."""

    def fetch_versions(self, asset: str, output_subdir: str) -> bool:
        """Bring what a report build reads of the sweep's published model versions (their
        `VERSION_REPORT_FILES`, never a checkpoint); a version the store no longer has is not
        the sweep's here either. False when the store has none."""

    def publish_sweep_file(self, asset: str, output_subdir: str, name: str) -> None:
        """Upload one file of the sweep folder as it is now (its `analysis_config.json`,
        written at submission): readable at once once the sweep's files were published
        (`publish_sweep_reports`), else with them."""

    def publish_sweep_reports(self, asset: str, output_subdir: str) -> None:
        """Make the sweep folder's files (not its model versions) visible, replacing the
        previous set: files it no longer has are removed."""

    def drop_unpublished_versions(self, asset: str, output_subdir: str, older_than: float) -> list[str]:
        """Remove the sweep's model versions whose upload never finished (the newest object
        older than `older_than` seconds); their paths under the sweep folder."""

    def publish_version(self, asset: str, output_subdir: str, fold: str, version: str) -> None:
        """Make a trained model version (`core.paths.model_version`) visible to readers."""

    def copy_version(self, asset: str, output_subdir: str, fold: str, version: str, dest: Path) -> bool:
        """Copy every file of a published model version into `dest`, an empty folder on this
        machine (a run recorded from the run cache fills its own version with it); the
        version's own local folder, which a report build may be reading, is left as it is.
        False when the store has no such version."""

    def drop_local_version(self, asset: str, output_subdir: str, fold: str, version: str) -> bool:
        """Forget this machine's copy of a model version it published: the store serves it
        from now on. On the local disk the data root is the store, so nothing is removed.
        True when a local copy was removed."""

    # -- studies ---------------------------------------------------------------------------------

    def fetch_study(self, asset: str, output_subdir: str) -> bool:
        """Bring the study's folder (its storage, a study continued elsewhere); False when the
        store has none."""

    def publish_study(self, asset: str, output_subdir: str) -> None:
        """Make the study's folder as written here visible to readers."""

    # -- reading, for the API ---------------------------------------------------------------------

    def open(self, path: Path, inside: Path | None = None) -> StoredFile | None:
        """The file at `path` (under the data root) as the API serves it, or None when it is
        not a published regular file inside `inside` (a sweep's or a study's folder)."""

    def read_bytes(self, path: Path, inside: Path | None = None) -> bytes | None:
        """The bytes of the file `open` would serve, or None."""

    def listing(self, folder: Path, suffix: str, inside: Path | None = None) -> list[str]:
        """Names of the files directly in `folder` ending in `suffix` that `open` serves, sorted."""


class LocalStore:
    """The data root on the local disk: nothing to move, reads from the disk."""

    remote = False
    url: str | None = None

    def __init__(self, root: Path) -> None:
        self.root = root

    # -- datasets --------------------------------------------------------------------------------

    def datasets(self) -> list[str]:
        base = datasets_dir(self.root)
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []

    def fetch_dataset(self, asset: str) -> bool:
        return dataset_dir(self.root, asset).is_dir()

    def fetch_datasets(self) -> list[str]:
        return self.datasets()

    def publish_dataset(self, asset: str) -> None:
        dataset_dir(self.root, asset)  # the same check of the name as on an object store

    # -- sweeps and their model versions ---------------------------------------------------------

    def fetch_sweep_inputs(self, asset: str, output_subdir: str) -> bool:
        return sweep_dir(self.root, asset, output_subdir).is_dir()

    def fetch_versions(self, asset: str, output_subdir: str) -> bool:
        return any(p.is_dir() for p in sweep_dir(self.root, asset, output_subdir).glob(str(VERSIONS)))

    def publish_sweep_file(self, asset: str, output_subdir: str, name: str) -> None:
        pass

    def publish_sweep_reports(self, asset: str, output_subdir: str) -> None:
        pass

    def drop_unpublished_versions(self, asset: str, output_subdir: str, older_than: float) -> list[str]:
        return []

    def publish_version(self, asset: str, output_subdir: str, fold: str, version: str) -> None:
        pass

    def copy_version(self, asset: str, output_subdir: str, fold: str, version: str, dest: Path) -> bool:
        source = version_folder(sweep_dir(self.root, asset, output_subdir), fold, version)
        if not source.is_dir():
            return False
        ensure_inside(self.root, source, dest)
        for rel in _published_files(source, lambda _rel: False):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / rel, dest / rel)
        return True

    def drop_local_version(self, asset: str, output_subdir: str, fold: str, version: str) -> bool:
        return False

    # -- studies ---------------------------------------------------------------------------------

    def fetch_study(self, asset: str, output_subdir: str) -> bool:
        return hpo_dir(self.root, asset, output_subdir).is_dir()

    def publish_study(self, asset: str, output_subdir: str) -> None:
        pass

    # -- reading, for the API --------------------------------------------------------------------

    def open(self, path: Path, inside: Path | None = None) -> StoredFile | None:
        """The regular file `path`, or None: its real path (links resolved now) must lie inside
        the data root and, with `inside` (a sweep's or a study's folder), inside that folder,
        which must itself be no link: a planted link to elsewhere, or to another file of the
        data root such as the database, is not followed."""
        real = resolve_inside(self.root, path)
        if real is not None and inside is not None:
            boundary = inside.resolve()
            own = inside.is_relative_to(self.root) and boundary == self.root.resolve() / inside.relative_to(self.root)
            real = resolve_inside(boundary, real) if own else None
        if real is None or not real.is_file():
            return None
        return StoredFile(real.stat().st_size, path=real)

    def read_bytes(self, path: Path, inside: Path | None = None) -> bytes | None:
        found = self.open(path, inside)
        return None if found is None or found.path is None else found.path.read_bytes()

    def listing(self, folder: Path, suffix: str, inside: Path | None = None) -> list[str]:
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.glob(f"*{suffix}") if self.open(p, inside) is not None)


class ObjectStore:
    """An S3 (or S3-compatible) bucket and prefix holding the data root's layout."""

    remote = True

    def __init__(self, root: Path, url: str, filesystem: Any = None) -> None:
        self.root = root
        self.url: str = url.rstrip("/")
        self.base = parse_store_url(url)
        self._filesystem = filesystem
        self._pid = os.getpid() if filesystem is not None else -1

    @property
    def fs(self) -> Any:
        """The s3fs filesystem of this process (its event loop does not survive a fork)."""
        if self._filesystem is None or self._pid != os.getpid():
            import s3fs

            self._filesystem = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
            self._pid = os.getpid()
        return self._filesystem

    def key(self, path: Path) -> str:
        """The object key of a path under the data root."""
        try:
            rel = path.relative_to(self.root)
        except ValueError:
            raise StoreError(f"{path} is not under the data root {self.root}") from None
        return f"{self.base}/{rel.as_posix()}" if rel.parts else self.base

    # -- datasets --------------------------------------------------------------------------------

    def datasets(self) -> list[str]:
        pattern = f"{self.key(datasets_dir(self.root))}/*/{MANIFEST}"
        keys = self._call(f"listing {pattern}", lambda: self.fs.glob(pattern))
        return sorted(PurePosixPath(k).parent.name for k in keys)

    def fetch_dataset(self, asset: str) -> bool:
        return self._fetch_folder(dataset_dir(self.root, asset))

    def fetch_datasets(self) -> list[str]:
        assets = self.datasets()
        self._fetch_folders([dataset_dir(self.root, asset) for asset in assets])
        return assets

    def publish_dataset(self, asset: str) -> None:
        self._publish_folder(dataset_dir(self.root, asset))

    # -- sweeps and their model versions ---------------------------------------------------------

    def fetch_sweep_inputs(self, asset: str, output_subdir: str) -> bool:
        return self._fetch_folder(sweep_dir(self.root, asset, output_subdir), SWEEP_INPUT_FILES)

    def fetch_versions(self, asset: str, output_subdir: str) -> bool:
        return self._fetch_versions(sweep_dir(self.root, asset, output_subdir))

    def publish_sweep_file(self, asset: str, output_subdir: str, name: str) -> None:
        self._put_file(sweep_dir(self.root, asset, output_subdir) / name)

    def publish_sweep_reports(self, asset: str, output_subdir: str) -> None:
        self._publish_reports_folder(sweep_dir(self.root, asset, output_subdir))

    def drop_unpublished_versions(self, asset: str, output_subdir: str, older_than: float) -> list[str]:
        return self._drop_unpublished_folder(sweep_dir(self.root, asset, output_subdir), older_than)

    def publish_version(self, asset: str, output_subdir: str, fold: str, version: str) -> None:
        self._publish_folder(version_folder(sweep_dir(self.root, asset, output_subdir), fold, version))

    def copy_version(self, asset: str, output_subdir: str, fold: str, version: str, dest: Path) -> bool:
        folder = version_folder(sweep_dir(self.root, asset, output_subdir), fold, version)
        manifest = self._manifest(folder)
        if manifest is None:
            return False
        ensure_inside(self.root, dest)
        files: dict[str, dict[str, Any]] = manifest["files"]
        targets = [dest / rel for rel in files]
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
        keys = [f"{self.key(folder)}/{rel}" for rel in files]
        try:
            self._call(f"downloading {len(keys)} files", partial(self.fs.get, keys, [str(t) for t in targets]))
        except FileNotFoundError:
            raise StoreError(f"{self.key(folder)} is being published again: try again") from None
        for (rel, entry), target in zip(files.items(), targets, strict=True):
            if not _matches(target, entry):
                raise StoreError(f"{self.key(folder)}/{rel} changed while it was read: try again")
        return True

    def drop_local_version(self, asset: str, output_subdir: str, fold: str, version: str) -> bool:
        return self._drop_local_folder(version_folder(sweep_dir(self.root, asset, output_subdir), fold, version))

    # -- studies ---------------------------------------------------------------------------------

    def fetch_study(self, asset: str, output_subdir: str) -> bool:
        return self._fetch_folder(hpo_dir(self.root, asset, output_subdir))

    def publish_study(self, asset: str, output_subdir: str) -> None:
        self._publish_folder(hpo_dir(self.root, asset, output_subdir))

    # -- reading, for the API ------------------------------------------------------------------------

    def open(self, path: Path, inside: Path | None = None) -> StoredFile | None:
        # Objects have no links: a key is its path, and only the folder's manifest lists it.
        entry = None if inside is not None and not path.is_relative_to(inside) else self._published(path)
        if entry is None:
            return None
        key = self.key(path)
        try:
            handle = self._call(f"opening {key}", lambda: self.fs.open(key, "rb", block_size=CHUNK))
        except FileNotFoundError:
            return None
        return StoredFile(int(entry["size"]), chunks=_chunks(handle))

    def read_bytes(self, path: Path, inside: Path | None = None) -> bytes | None:
        if (inside is not None and not path.is_relative_to(inside)) or self._published(path) is None:
            return None
        try:
            data: bytes = self._call(f"reading {self.key(path)}", lambda: self.fs.cat_file(self.key(path)))
        except FileNotFoundError:
            return None
        return data

    def listing(self, folder: Path, suffix: str, inside: Path | None = None) -> list[str]:
        if inside is not None and not folder.is_relative_to(inside):
            return []
        for owner in publishing_folders(self.root, folder / "x"):
            manifest = self._manifest(owner)
            if manifest is not None:
                prefix = folder.relative_to(owner).as_posix()
                prefix = "" if prefix == "." else f"{prefix}/"
                names = [rel[len(prefix) :] for rel in manifest["files"] if rel.startswith(prefix)]
                return sorted(n for n in names if "/" not in n and n.endswith(suffix))
        return []

    def _published(self, path: Path) -> dict[str, Any] | None:
        """The manifest entry of `path`, from the manifest of the folder that publishes it."""
        for folder in publishing_folders(self.root, path):
            manifest = self._manifest(folder)
            if manifest is not None:
                entry = manifest["files"].get(path.relative_to(folder).as_posix())
                return entry if isinstance(entry, dict) else None
        return None

    # -- by folder: what the named calls above do, given the folder core.paths gives them -------

    def _publish_folder(self, folder: Path) -> None:
        self._publish(folder, lambda rel: False)

    def _publish_reports_folder(self, folder: Path) -> None:
        self._publish(folder, in_versions, remove_missing=True)

    def _put_file(self, path: Path) -> None:
        self._call(f"uploading {self.key(path)}", lambda: self.fs.put_file(str(path), self.key(path)))
        owners = publishing_folders(self.root, path)
        manifest = self._manifest(owners[0]) if owners else None
        if manifest is not None:  # its manifest follows, or readers would refuse the new bytes
            folder = owners[0]
            manifest["files"][path.relative_to(folder).as_posix()] = {
                "size": path.stat().st_size,
                "sha256": file_sha256(path),
            }
            body = json.dumps(manifest, indent=1, sort_keys=True).encode()
            self._call(f"writing {self._mkey(folder)}", lambda: self.fs.pipe_file(self._mkey(folder), body))

    def _drop_local_folder(self, folder: Path) -> bool:
        # A worker's disk is scratch: keeping each version it trained would fill it (286 kB a
        # run). Nothing on this machine reads a checkpoint after its upload, and a report build
        # fetches the small files of every published version from the store.
        if not folder.is_dir():
            return False
        ensure_inside(self.root, folder)  # never removes through a planted link
        shutil.rmtree(folder)
        return True

    def _fetch_folder(self, folder: Path, names: tuple[str, ...] | None = None) -> bool:
        for _attempt in range(3):  # a folder re-published while we read it: read it again
            manifest = self._manifest(folder)
            if manifest is None:
                return False
            if self._download({folder: manifest}, names) == []:
                return True
            time.sleep(0.2)
        raise StoreError(f"{self.key(folder)} kept changing while it was read: try again")

    def _fetch_folders(self, folders: list[Path], names: tuple[str, ...] | None = None) -> set[Path]:
        # Every manifest, then every missing file, in concurrent requests: thousands of folders
        # would otherwise pay round trips for each.
        by_key = {self._mkey(folder): folder for folder in folders}
        keys = list(by_key)
        read = (
            self._call(f"reading {len(keys)} manifests", lambda: self.fs.cat(keys, on_error="return")) if keys else {}
        )
        manifests = {}
        for key, data in read.items():
            if isinstance(data, bytes):  # else removed since the listing
                manifests[by_key[key]] = self._parsed(by_key[key], data)
        for folder in self._download(manifests, names):
            self._fetch_folder(folder, names)  # re-published meanwhile: read it again
        return set(manifests)

    def _drop_unpublished_folder(self, folder: Path, older_than: float) -> list[str]:
        base = f"{self.key(folder)}/{FOLDS}"
        try:
            found = self._call(f"listing {base}", lambda: self.fs.find(base, detail=True))
        except FileNotFoundError:
            return []
        versions: dict[PurePosixPath, list[dict[str, Any]]] = {}
        for key, info in found.items():
            version = owning_version(PurePosixPath(key).relative_to(PurePosixPath(self.key(folder))))
            if version is not None:
                versions.setdefault(version, []).append(info)
        now = datetime.now(UTC)
        dropped = []
        for version, infos in sorted(versions.items()):
            if any(PurePosixPath(i["name"]).name == MANIFEST for i in infos):
                continue
            newest = max(_modified(i) for i in infos)
            if (now - newest).total_seconds() >= older_than:
                target = f"{self.key(folder)}/{version}"
                self._call(f"removing {target}", partial(self.fs.rm, target, recursive=True))
                dropped.append(str(version))
        return dropped

    # -- the folder operations ---------------------------------------------------------------------

    def _call(self, what: str, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except FileNotFoundError:
            raise
        except StoreError:
            raise
        except Exception as exc:  # botocore, aiohttp and OSError flavours of "unreachable" or "denied"
            raise StoreError(f"object store {self.url}: {what} failed: {type(exc).__name__}: {exc}") from exc

    def _manifest(self, folder: Path) -> dict[str, Any] | None:
        try:
            data = self._call(f"reading {self.key(folder)}/{MANIFEST}", lambda: self.fs.cat_file(self._mkey(folder)))
        except FileNotFoundError:
            return None
        return self._parsed(folder, data)

    def _parsed(self, folder: Path, data: bytes) -> dict[str, Any]:
        try:
            manifest = json.loads(data)
            if not isinstance(manifest.get("files"), dict):
                raise ValueError("no files")
        except (ValueError, AttributeError) as exc:
            raise StoreError(f"{self._mkey(folder)} is not a manifest ({exc}): publish the folder again") from None
        return dict(manifest)

    def _mkey(self, folder: Path) -> str:
        return f"{self.key(folder)}/{MANIFEST}"

    def _publish(self, folder: Path, skip: Callable[[PurePosixPath], bool], remove_missing: bool = False) -> None:
        before = self._manifest(folder) if remove_missing else None
        locals_ = {str(rel): folder / Path(rel) for rel in _published_files(folder, skip)}
        files = {rel: {"size": p.stat().st_size, "sha256": file_sha256(p)} for rel, p in locals_.items()}
        if locals_:  # every file in concurrent requests (a report build writes a hundred)
            lpaths = [str(p) for p in locals_.values()]
            rpaths = [f"{self.key(folder)}/{rel}" for rel in locals_]
            self._call(f"uploading {len(rpaths)} files to {self.key(folder)}", partial(self.fs.put, lpaths, rpaths))
        manifest = {"files": files, "published_at": datetime.now(UTC).isoformat(timespec="seconds")}
        body = json.dumps(manifest, indent=1, sort_keys=True).encode()
        self._call(f"writing {self._mkey(folder)}", lambda: self.fs.pipe_file(self._mkey(folder), body))
        write_bytes_atomic(folder / MANIFEST, body, durable=False)  # this machine has them: no download
        gone = sorted(set(before["files"]) - set(files)) if before else []
        if gone:
            keys = [f"{self.key(folder)}/{rel}" for rel in gone]
            self._call(f"removing {len(keys)} old files", lambda: self.fs.rm(keys))

    def _fetch_versions(self, folder: Path) -> bool:
        pattern = f"{self.key(folder)}/{VERSIONS}/{MANIFEST}"
        keys = self._call(f"listing {pattern}", lambda: self.fs.glob(pattern))
        base = PurePosixPath(self.key(folder))
        versions = [folder / Path(PurePosixPath(key).relative_to(base)).parent for key in keys]
        fetched = self._fetch_folders(versions, VERSION_REPORT_FILES)
        # A version this machine holds that the store does not (removed there) is not the sweep's.
        stale = {p.parent for p in folder.glob(f"{VERSIONS}/{MANIFEST}")} - fetched
        ensure_inside(self.root, *stale)
        for version in stale:
            (version / MANIFEST).unlink()
            for path in version.iterdir():
                if path.is_file():
                    path.unlink()
        return bool(fetched)

    def _download(self, manifests: dict[Path, dict[str, Any]], names: tuple[str, ...] | None) -> list[Path]:
        """The files (or `names` of them) of each folder's manifest that the local copy lacks,
        in concurrent requests; each file is checked against its manifest before it replaces
        the local one. Returns the folders with an object that no longer matched its manifest
        (being published again): of those, only what matched was kept."""
        wanted: list[tuple[Path, str, str]] = []  # (folder, file, temporary file)
        held: dict[Path, set[str]] = {}
        changed: set[Path] = set()
        ensure_inside(self.root, *manifests)  # nothing is written through a planted link
        try:
            for folder, manifest in manifests.items():
                local = _read_local_manifest(folder)
                files = manifest["files"]
                held[folder] = {r for r, e in files.items() if local.get(r) == e and _has_size(folder / r, e["size"])}
                for rel in files:
                    if (names is None or rel in names) and rel not in held[folder]:
                        wanted.append((folder, rel, _temporary(folder / rel)))
            if wanted:
                keys = [f"{self.key(folder)}/{rel}" for folder, rel, _ in wanted]
                try:
                    self._call(f"downloading {len(keys)} files", partial(self.fs.get, keys, [t for *_, t in wanted]))
                except FileNotFoundError:  # an object went away: its folder is being published again
                    changed = set(manifests)
            for folder, rel, tmp in wanted:
                entry = manifests[folder]["files"][rel]
                if folder in changed or not _matches(Path(tmp), entry):
                    changed.add(folder)
                    continue
                os.chmod(tmp, FILE_MODE)
                os.replace(tmp, folder / rel)
                held[folder].add(rel)
        finally:
            for *_, tmp in wanted:
                Path(tmp).unlink(missing_ok=True)
        for folder, manifest in manifests.items():
            # The local copy of the manifest lists what this machine holds, checked: the next fetch skips it.
            kept = {rel: manifest["files"][rel] for rel in sorted(held[folder])}
            write_bytes_atomic(folder / MANIFEST, json.dumps({**manifest, "files": kept}).encode(), durable=False)
        return sorted(changed)


def _published_files(folder: Path, skip: Callable[[PurePosixPath], bool]) -> list[PurePosixPath]:
    """The files of a local folder to publish, relative and sorted: no manifest, no
    half-written temporary file (`.name.tmp`), nothing `skip` names."""
    out = []
    for path in sorted(folder.rglob("*")):
        rel = PurePosixPath(path.relative_to(folder).as_posix())
        if path.is_file() and rel.name != MANIFEST and not rel.name.startswith(".") and not skip(rel):
            out.append(rel)
    return out


def _chunks(handle: Any) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def _modified(info: dict[str, Any]) -> datetime:
    value = info.get("LastModified") or info.get("last_modified") or info.get("created")
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return datetime.now(UTC)


def _temporary(target: Path) -> str:
    """An empty temporary file beside `target` (hidden: `.name.*.tmp`, never published)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    return tmp


def _matches(path: Path, entry: dict[str, Any]) -> bool:
    return bool(path.stat().st_size == entry["size"] and file_sha256(path) == entry["sha256"])


def _has_size(path: Path, size: int) -> bool:
    return path.is_file() and path.stat().st_size == size


def _read_local_manifest(folder: Path) -> dict[str, Any]:
    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return files if isinstance(files, dict) else {}


def parse_store_url(url: str) -> str:
    """`s3://bucket[/prefix]` as `bucket[/prefix]` (the key of the data root).

    Raises:
        ValueError: any other URL; the message says what is expected.
    """
    scheme, sep, rest = url.partition("://")
    rest = rest.strip("/")
    if scheme != "s3" or not sep or not rest or "//" in rest:
        raise ValueError(f"{url!r} is not an object store URL: expected s3://bucket or s3://bucket/prefix")
    return rest


def open_store(root: Path, url: str | None) -> Store:
    """The store of a data root: the disk itself, or the object store at `url`."""
    return ObjectStore(root, url) if url else LocalStore(root)
