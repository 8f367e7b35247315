"""Where model artifacts live, as references that survive reinstalling the package and moving machines.

A registry row names its artifact by one of:

- `bundled:<dataset>`: a model shipped with the package (models/bundled/<dataset>/), resolved at load
  time against whatever install is current;
- `home:<relative path>`: a folder under HASHTAGGER_HOME (models trained here);
- `s3://bucket/prefix/<model_id>/`: the artifact store, when HASHTAGGER_ARTIFACTS names one. Every
  process downloads the folder once into HASHTAGGER_HOME/cache/models/<model_id>/ and serves from there;
- an absolute path, for a model kept elsewhere (it then works only where that path exists).

The object store is reached with the same boto3 settings as image sources (AWS_ENDPOINT_URL, ...;
tasks/tag/s3.py). Prepared dataset versions travel the same way (`push_dataset` / `pull_dataset`).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import uuid
from pathlib import Path

from tasks.config import Settings
from tasks.registry import artifact

BUNDLED_DIR = Path(__file__).resolve().parent.parent.parent / "models" / "bundled"
BUNDLED, HOME, S3 = "bundled:", "home:", "s3://"
CACHE_DIR = "cache/models"  # under HASHTAGGER_HOME: downloaded artifacts, one folder per model id


class StoreError(OSError):
    """An artifact reference cannot be resolved, or the object store refused a transfer."""


@dataclasses.dataclass(frozen=True)
class StoreConfig:
    """The artifact store; override through the environment."""

    # s3://bucket/prefix where trained models (<prefix>/models/<model_id>/) and prepared datasets
    # (<prefix>/datasets/<name>/<version>/) are uploaded; None: they stay on this machine's disk.
    location: str | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "StoreConfig":
        environ = os.environ if environ is None else environ
        location = (environ.get("HASHTAGGER_ARTIFACTS") or "").strip() or None
        if location and not location.startswith(S3):
            raise StoreError(f"HASHTAGGER_ARTIFACTS={location}: give an s3://bucket/prefix location")
        return cls(location=location.rstrip("/") if location else None)


# ---------------------------------------------------------------------------------------------- references

def reference(path: str | Path, settings: Settings | None = None) -> str:
    """The portable reference of a local artifact folder (bundled:, home: or an absolute path)."""
    settings = settings or Settings.from_env()
    folder = Path(path).expanduser().resolve()
    for base, prefix in ((BUNDLED_DIR.resolve(), BUNDLED), (settings.home.resolve(), HOME)):
        if folder.is_relative_to(base) and folder != base:
            return prefix + folder.relative_to(base).as_posix()
    return str(folder)


def resolve(ref: str | Path, settings: Settings | None = None, s3_settings=None) -> Path:
    """The local folder a reference names, downloading it from the artifact store when needed (reached
    through `s3_settings`, tasks.config.S3Settings; None: boto3's standard AWS environment).

    Raises StoreError when an s3:// artifact cannot be fetched.
    """
    settings = settings or Settings.from_env()
    text = str(ref)
    if text.startswith(BUNDLED):
        return BUNDLED_DIR / text[len(BUNDLED):]
    if text.startswith(HOME):
        return settings.home / text[len(HOME):]
    if text.startswith(S3):
        return _cached(text, settings, s3_settings)
    path = Path(text)
    bundled = _moved_bundled(path)
    return bundled if bundled is not None else path


def local_path(ref: str) -> str:
    """A reference as a path a person can pass to a command, without downloading anything (an s3://
    reference stays as it is)."""
    return ref if ref.startswith(S3) else str(resolve(ref))


def _moved_bundled(path: Path) -> Path | None:
    """A bundled model recorded by absolute path in an install that is gone (registries before references)."""
    if path.exists() or len(path.parts) < 3 or path.parts[-3:-1] != ("models", "bundled"):
        return None
    current = BUNDLED_DIR / path.name
    return current if current.is_dir() else None


def model_id_of(ref: str) -> str:
    """The last part of a reference: an artifact folder is named after its model id."""
    return ref.rstrip("/").rsplit("/", 1)[-1]


# ---------------------------------------------------------------------------------------------- the object store

def publish(path: str | Path, model_id: str, settings: Settings | None = None,
            config: StoreConfig | None = None) -> str:
    """Upload the artifact folder when an s3:// store is configured; returns the reference to record."""
    config = config or StoreConfig.from_env()
    local = reference(path, settings)
    if config.location is None or local.startswith(BUNDLED):  # every install has the bundled models
        return local
    uri = f"{config.location}/models/{model_id}/"
    upload_folder(Path(path), uri)
    return uri


def _cached(uri: str, settings: Settings, s3_settings=None) -> Path:
    """The local copy of an s3:// artifact, downloaded once per model id. A folder changes once only:
    promotion adds its model.onnx, so a copy taken before (by an evaluation) is refreshed then."""
    target = settings.home / CACHE_DIR / model_id_of(uri)
    if (target / artifact.METADATA_FILE).exists():
        if (target / artifact.ONNX_FILE).exists() or not _exists(uri.rstrip("/") + "/" + artifact.ONNX_FILE,
                                                                 s3_settings):
            return target
    download_folder(uri, target, s3_settings)
    return target


def _exists(uri: str, s3_settings=None) -> bool:
    from tasks.tag import s3

    bucket, key = s3.parse_uri(uri)
    try:
        s3.make_client(settings=s3_settings).head_object(Bucket=bucket, Key=key)
        return True
    except Exception:  # noqa: BLE001  404, or the store is unreachable: the cached copy serves as it is
        return False


def upload_folder(folder: Path, uri: str, s3_settings=None) -> int:
    """Copy every file of `folder` under the s3:// prefix `uri` (metadata.json last: its presence says
    the upload is complete); returns the number of files."""
    from tasks.tag import s3

    if not folder.is_dir():
        raise StoreError(f"{folder}: no such folder to upload")
    bucket, prefix = s3.parse_uri(uri.rstrip("/") + "/")
    client = s3.make_client(settings=s3_settings)
    files = sorted((path for path in folder.rglob("*") if path.is_file() and not path.name.startswith(".")),
                   key=lambda path: (path.name == artifact.METADATA_FILE, str(path)))
    try:
        for path in files:
            client.upload_file(str(path), bucket, prefix + path.relative_to(folder).as_posix())
    except Exception as error:  # boto3 raises ClientError, S3UploadFailedError, EndpointConnectionError
        raise StoreError(f"uploading {folder} to {uri} failed: {error}") from error
    return len(files)


def download_folder(uri: str, target: Path, s3_settings=None) -> Path:
    """Download everything under the s3:// prefix `uri` into `target`, atomically (a staging folder
    renamed into place), so a killed download never leaves a half folder that looks complete."""
    from tasks.tag import s3

    bucket, prefix = s3.parse_uri(uri.rstrip("/") + "/")
    client = s3.make_client(settings=s3_settings)
    staging = target.with_name(f".staging-{target.name}-{uuid.uuid4().hex[:8]}")
    try:
        keys = [item["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                for item in page.get("Contents", [])]
        if not keys:
            raise StoreError(f"{uri}: nothing there (was the model uploaded? HASHTAGGER_ARTIFACTS, AWS_ENDPOINT_URL)")
        for key in keys:
            local = staging / key[len(prefix):]
            local.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, key, str(local))
        target.parent.mkdir(parents=True, exist_ok=True)
        _replace(staging, target)
    except StoreError:
        raise
    except Exception as error:
        raise StoreError(f"downloading {uri} failed: {error}") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _replace(staging: Path, target: Path) -> None:
    """Move the downloaded folder into place; an older copy there (without model.onnx) goes."""
    old = target.with_name(f".old-{target.name}-{uuid.uuid4().hex[:8]}")
    if target.exists():
        os.rename(target, old)
    try:
        os.rename(staging, target)
    except OSError:  # another process finished the same download first: theirs is as good
        if not target.is_dir():
            raise
    shutil.rmtree(old, ignore_errors=True)


def push_dataset(name: str, version: str, settings: Settings | None = None,
                 config: StoreConfig | None = None) -> str | None:
    """Upload a prepared dataset version folder to the store and mark it the latest there (an object
    `<location>/datasets/<name>/LATEST` holding the version); None when no store is configured."""
    from tasks.tag import s3

    settings, config = settings or Settings.from_env(), config or StoreConfig.from_env()
    if config.location is None:
        return None
    uri = f"{config.location}/datasets/{name}/{version}/"
    upload_folder(settings.datasets_dir / name / version, uri)
    bucket, prefix = s3.parse_uri(f"{config.location}/datasets/{name}/LATEST")
    try:
        s3.make_client().put_object(Bucket=bucket, Key=prefix, Body=version.encode())
    except Exception as error:  # noqa: BLE001  boto3's many kinds, as in upload_folder
        raise StoreError(f"marking {name} {version} the latest in {config.location} failed: {error}") from error
    return uri


def pull_dataset(name: str, version: str | None, settings: Settings | None = None,
                 config: StoreConfig | None = None) -> tuple[str | None, Path | None]:
    """(version, folder) of a dataset version on this machine, downloaded from the store when missing
    here; version None asks for the store's latest. (None, None) when there is no store and no version."""
    settings, config = settings or Settings.from_env(), config or StoreConfig.from_env()
    if config.location is None:
        return version, (settings.datasets_dir / name / version) if version else None
    version = version or _latest_version(name, config)
    folder = settings.datasets_dir / name / version
    if folder.is_dir():
        return version, folder
    return version, download_folder(f"{config.location}/datasets/{name}/{version}/", folder)


def _latest_version(name: str, config: StoreConfig) -> str:
    from tasks.tag import s3

    bucket, key = s3.parse_uri(f"{config.location}/datasets/{name}/LATEST")
    try:
        return s3.make_client().get_object(Bucket=bucket, Key=key)["Body"].read().decode().strip()
    except Exception as error:  # noqa: BLE001
        raise StoreError(f"no prepared {name} dataset in {config.location} ({error}): run the cifar_dataset "
                         f"DAG with HASHTAGGER_ARTIFACTS set, or name a dataset_version") from error
