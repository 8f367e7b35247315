"""Folder sources where the file system itself misbehaves (issue 21): folders that cannot be listed,
names under another locale, NAS and system folders; on PostgreSQL and SQLite."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from fixtures import hostile
from tasks.store import db
from tasks.tag import predictor
from tasks.tag import sources
from tasks.tag import tag
from tasks.hashtags.engine import HashtagEngine


@pytest.fixture(scope="module")
def model(model_dir):
    return predictor.load(model_dir)


def rows(engine, sql: str) -> list:
    with engine.connect() as connection:
        return connection.execute(sa.text(sql)).all()


def run(folder, model, engine) -> tag.RunSummary:
    return tag.run(str(folder), model, HashtagEngine(), engine, tag.TagConfig(batch_size=3))


def cli_tag(folder: Path, model_dir: Path, db_url: str, bin_dir: Path, prefix: tuple = (), **env) -> dict:
    """`hashtagger tag FOLDER --json` in a subprocess; its summary, with the exit status as `exit`."""
    done = subprocess.run([*prefix, str(bin_dir / "hashtagger"), "tag", str(folder), "--model", str(model_dir),
                           "--json"], env={**os.environ, "HASHTAGGER_DB_URL": db_url, **env},
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().startswith("{"), done.stderr
    return {**json.loads(done.stdout[:done.stdout.rindex("}") + 1]), "exit": done.returncode}


def nest_deeper_than_path_max(root: Path) -> bytes:
    """root/deep/ddd.../ddd.../photo.jpg, the folders' path over PATH_MAX (made level by level through
    directory descriptors, as no path that long can be opened)."""
    limit = os.pathconf("/", "PC_PATH_MAX")
    descriptor = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    depth, name = 0, "d" * 200
    try:
        while depth * (len(name) + 1) < limit + 400:
            os.mkdir(name, dir_fd=descriptor)
            inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=descriptor)
            os.close(descriptor)
            descriptor, depth = inner, depth + 1
        photo = os.open("photo.jpg", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=descriptor)
        os.write(photo, hostile.jpeg())
        os.close(photo)
    finally:
        os.close(descriptor)
    return os.fsencode(root) + (b"/" + name.encode()) * depth


def test_a_nest_deeper_than_path_max_fails_as_one_entry_with_its_reason_and_the_run_goes_on(tmp_path, model,
                                                                                            db_url):
    folder = tmp_path / "photos"
    (folder / "deep").mkdir(parents=True)
    (folder / "top.jpg").write_bytes(hostile.jpeg())
    (folder / "zz-after.jpg").write_bytes(hostile.jpeg(colour=(20, 200, 20)))
    nest_deeper_than_path_max(folder / "deep")
    engine = db.ensure_schema(db.engine(db_url))
    first = run(folder, model, engine)
    assert (first.status, first.seen, first.tagged, first.failed) == ("succeeded_with_failures", 3, 2, 1)
    [(uri, reason)] = rows(engine, "SELECT image_uri, reason FROM failed_images")
    assert uri.startswith(str(folder / "deep")) and len(uri.encode()) > os.pathconf("/", "PC_PATH_MAX")
    assert "cannot list this folder: its path is longer than the system allows" in reason, reason
    assert "move the folder higher up" in reason


def test_an_unreadable_subfolder_fails_as_one_entry_and_is_tagged_once_readable(tmp_path, model_dir, results_db_url,
                                                                                bin_dir):
    folder = tmp_path / "photos"
    for path in ("a.jpg", "locked/b.jpg", "open/c.jpg"):
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(hostile.jpeg(colour=(20 * len(path), 100, 30)))
    (folder / "locked").chmod(0)
    # root reads every folder: the run goes without the capabilities that let it (as any other user)
    prefix = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps", "-all") \
        if os.geteuid() == 0 else ()
    try:
        first = cli_tag(folder, model_dir, results_db_url, bin_dir, prefix)
    finally:
        (folder / "locked").chmod(0o755)
    assert (first["exit"], first["status"], first["seen"], first["tagged"], first["failed"]) == (
        1, "succeeded_with_failures", 3, 2, 1), "the documented exit status when some entries failed"
    engine = db.engine(results_db_url)
    [(uri, reason)] = rows(engine, "SELECT image_uri, reason FROM failed_images")
    assert uri == str(folder / "locked") and "cannot list this folder: permission denied" in reason
    second = cli_tag(folder, model_dir, results_db_url, bin_dir)
    assert (second["exit"], second["tagged"], second["skipped"]) == (0, 1, 2)
    assert rows(engine, "SELECT image_uri FROM failed_images") == [], "readable now: its failure is over"


@pytest.fixture(scope="module")
def latin1_locale(tmp_path_factory) -> dict:
    """Environment for a process under en_US.ISO-8859-1, compiled into a folder of its own (LOCPATH)."""
    folder = tmp_path_factory.mktemp("locales")
    if not shutil.which("localedef") or subprocess.run(
            ["localedef", "-i", "en_US", "-f", "ISO-8859-1", str(folder / "en_US.ISO-8859-1")],
            capture_output=True).returncode not in (0, 1):  # 1: compiled, with warnings
        pytest.skip("localedef cannot compile en_US.ISO-8859-1 here")
    return {"LOCPATH": str(folder), "LANG": "en_US.ISO-8859-1", "LC_ALL": "en_US.ISO-8859-1"}


@pytest.mark.parametrize("other_locale", ["latin-1", "ascii"])
def test_the_same_files_are_the_same_images_under_any_locale(tmp_path, model_dir, results_db_url, bin_dir,
                                                             other_locale, request):
    folder = tmp_path / "photos"
    folder.mkdir()
    names = ["café.jpg".encode(), b"caf\xe9.jpg", b"plain.jpg"]  # UTF-8, Latin-1, ASCII
    for index, name in enumerate(names):
        with open(os.fsencode(folder) + b"/" + name, "wb") as file:
            file.write(hostile.jpeg(colour=(200, 60 * index, 20)))
    utf8 = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    # ascii: the C locale without Python's UTF-8 mode, whose file system encoding is ASCII
    other = request.getfixturevalue("latin1_locale") if other_locale == "latin-1" else {
        "LANG": "C", "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    first = cli_tag(folder, model_dir, results_db_url, bin_dir, **other)
    assert (first["exit"], first["tagged"], first["failed"]) == (0, 3, 0)
    second = cli_tag(folder, model_dir, results_db_url, bin_dir, **utf8)
    assert (second["exit"], second["tagged"], second["skipped"]) == (0, 0, 3), "the same three images"
    engine = db.engine(results_db_url)
    shown = {uri for (uri,) in rows(engine, "SELECT image_uri FROM image_labels")}
    assert shown == {str(folder / "café.jpg"), str(folder / "caf\\xe9.jpg"), str(folder / "plain.jpg")}


def system_folders(folder: Path) -> int:
    """A photo among a NAS's and the operating systems' own folders and files; returns how many of
    those files are not hidden (the ones a run counts as skipped)."""
    skipped = ["@eaDir/photo.jpg/SYNOFILE_THUMB_XL.jpg", "@eaDir/photo.jpg/SYNOFILE_THUMB_M.jpg",
               "@eaDir/photo.jpg/SYNOPHOTO_FILM.jpg", "#recycle/old.jpg", "$RECYCLE.BIN/S-1-5-21/$RABC123.jpg",
               "System Volume Information/tracking.jpg", "sub/#Recycle/deleted.jpg", "Icon\r", "sub/Icon\r"]
    hidden = [".Trash-1000/files/gone.jpg", ".Trashes/501/gone.jpg"]
    for path in ["photo.jpg", "sub/other.jpg"] + skipped + hidden:
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(b"" if path.endswith("Icon\r") else hostile.jpeg(colour=(30, 30, 200)))
    return len(skipped)


def test_nas_and_system_folders_are_skipped_and_counted_like_sidecars(tmp_path, model, db_url):
    folder = tmp_path / "photos"
    skipped = system_folders(folder)
    engine = db.ensure_schema(db.engine(db_url))
    first = run(folder, model, engine)
    assert (first.status, first.seen, first.tagged, first.failed) == ("succeeded", 2, 2, 0)
    assert first.not_images == skipped
    assert {uri for (uri,) in rows(engine, "SELECT image_uri FROM image_results")} == {
        str(folder / "photo.jpg"), str(folder / "sub/other.jpg")}
    assert sources.is_system_folder("$Recycle.Bin") and sources.is_system_folder("@EADIR")
