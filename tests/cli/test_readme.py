"""What the README tells a user to run works for a user (issue 22): no command depends on this
repository's development layout, the data's origin is the archive prepare downloads, and the
PostgreSQL section creates the database before migrating it."""

from __future__ import annotations

import re
from pathlib import Path

from tasks.data import prepare

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def shell_lines() -> list[str]:
    """The command lines of the README's bash blocks, without their comments."""
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.DOTALL)
    return [line.split("#")[0].strip() for block in blocks for line in block.splitlines() if line.split("#")[0].strip()]


def test_no_command_uses_the_development_only_data_path():
    assert not [line for line in shell_lines() if "shared/data" in line]
    for paragraph in README.split("\n\n"):  # where the path is named, it is said to be development-only
        if "../shared/data" in paragraph:
            assert "development" in paragraph, paragraph


def test_the_data_comes_from_the_archive_prepare_downloads():
    assert "hashtagger data prepare cifar10" in shell_lines()
    official = prepare.OFFICIAL["cifar10"].url
    assert official.rsplit("/", 1)[0] + "/cifar.html" in README  # the authors' page of that archive


def test_the_postgresql_section_creates_the_database_before_migrating_it():
    lines = shell_lines()
    created = next(index for index, line in enumerate(lines) if line.startswith("createdb "))
    assert "hashtagger" in lines[created].split()[-1]
    assert lines.index("hashtagger db migrate") > created
