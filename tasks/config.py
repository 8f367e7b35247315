"""Where hashtagger keeps its files and results, read once from the environment."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path


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
