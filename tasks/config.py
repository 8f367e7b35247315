"""Where hashtagger keeps its files and results, read once from the environment."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

# The datasets with a bundled model (models/bundled/<name>/): the names every front end offers, the
# baseline champions, the Assets of dataset versions. Defined here only.
BUNDLED_DATASETS = ("cifar10", "cifar100")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Locations shared by every stage; override through the environment, never by editing."""

    # Root of datasets, trained models and the embedded SQLite database.
    home: Path = Path("~/.hashtagger").expanduser()
    # SQLAlchemy URL of the results database; None means the embedded SQLite file under `home`.
    db_url: str | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        """Settings from HASHTAGGER_HOME and HASHTAGGER_DB_URL (both optional)."""
        environ = os.environ if environ is None else environ
        home = Path(environ.get("HASHTAGGER_HOME") or "~/.hashtagger").expanduser()
        return cls(home=home, db_url=environ.get("HASHTAGGER_DB_URL") or None)

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.home / 'hashtagger.db'}"

    @property
    def datasets_dir(self) -> Path:
        return self.home / "datasets"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def downloads_dir(self) -> Path:
        return self.home / "downloads"


@dataclasses.dataclass(frozen=True)
class S3Settings:
    """How to reach an S3 store (a bucket of images, the artifact store), passed down as an argument
    (the DAGs build it from an Airflow connection: tasks/connections.py). A field left None falls back
    to boto3's own chain (AWS_ENDPOINT_URL, AWS_PROFILE, an instance role, ...)."""

    endpoint_url: str | None = None  # None: AWS itself, or AWS_ENDPOINT_URL
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    region: str | None = None

    def session_kwargs(self) -> dict[str, str]:
        """boto3.session.Session's keyword arguments for the fields that are set."""
        names = {"aws_access_key_id": self.access_key_id, "aws_secret_access_key": self.secret_access_key,
                 "aws_session_token": self.session_token, "region_name": self.region}
        return {name: value for name, value in names.items() if value}
