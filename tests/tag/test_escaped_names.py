"""The text shown for a name gives that name back, for every name (issue 21, item 14): names that read as
escaped text are escaped too, in new rows and, by migration 015, in rows written before."""

from __future__ import annotations

import random

import sqlalchemy as sa

from tasks.store import db
from tasks.tag import refs

TRICKY = [b"caf\xe9.jpg", b"caf\\xe9.jpg", b"caf\\\\xe9.jpg", b"caf\\\\\\xe9.jpg", b"\\", b"\\\\", b"a\\b.jpg",
          b"x\\x0", b"x\\x00", b"x\x00", b"\\x5c", b"\x5c\x5c", b"caf\\xE9.jpg", "café.jpg".encode(), b"\xff\\xff"]


def test_every_name_has_its_own_text_and_the_text_gives_the_name_back():
    rng = random.Random(21)
    alphabet = [b"\\", b"x", b"e", b"9", b"0", b"\x00", b"\xe9", b"\xc3\xa9", b"a", b"F"]
    names = set(TRICKY) | {b"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 7))) for _ in range(20000)}
    texts = {}
    for name in names:
        text = refs.escaped(name.decode("utf-8", "surrogateescape"))
        assert refs.storable(text), name
        assert refs.unescaped(text) == name, (name, text)
        assert texts.setdefault(text, name) == name, f"{name!r} and {texts[text]!r} are both shown as {text!r}"
    assert refs.escaped("a\\b.jpg") == "a\\b.jpg", "a backslash that reads as no escape is shown as it is"


def test_rows_written_before_015_get_a_reversible_text(db_url, monkeypatch):
    engine = db.engine(db_url)
    files = db.migration_files()
    monkeypatch.setattr(db, "migration_files", lambda: [(name, text) for name, text in files if name < "015"])
    db.migrate(engine)
    names = ["/p/caf\\xe9.jpg", "/p/two\\\\.jpg", "/p/plain\\b.jpg", "/p/caf\\xE9.jpg", "/p/cat.jpg"]
    with engine.begin() as connection:
        for table, columns in (("image_results", "model_version, confidence, top_labels, run_id, tagged_at"),
                               ("image_failures", "reason, run_id, failed_at")):
            values = {"image_results": "'m1', 0.9, '[]', 'r1', :at", "image_failures": "'bad', 'r1', :at"}[table]
            for name in names:
                connection.execute(sa.text(f"INSERT INTO {table} (image_uri, content_hash, {columns}) "
                                           f"VALUES (:uri, 'sha256:aa', {values})"), {"uri": name, "at": db.utcnow()})
        # a Latin-1 name written before 015, hashed and escaped as it has been since 010
        connection.execute(sa.text("INSERT INTO image_failures (image_uri, content_hash, reason, run_id, failed_at, "
                                   "uri_text) VALUES ('uri-sha256:00', '', 'bad', 'r1', :at, :text)"),
                           {"at": db.utcnow(), "text": "/p/caf\\xe9.jpg"})
    monkeypatch.setattr(db, "migration_files", lambda: files)
    assert "015_name_texts_and_cut_reads" in db.migrate(engine)
    expected = {name: refs.escaped(name) for name in names}
    assert expected["/p/caf\\xe9.jpg"] == "/p/caf\\\\xe9.jpg" and expected["/p/cat.jpg"] == "/p/cat.jpg"
    with engine.connect() as connection:
        labels = [uri for (uri,) in connection.execute(sa.text("SELECT image_uri FROM image_labels_all"))]
        failed = [uri for (uri,) in connection.execute(sa.text("SELECT image_uri FROM failed_images"))]
    assert sorted(labels) == sorted(expected.values())
    assert sorted(failed) == sorted([*expected.values(), "/p/caf\\xe9.jpg"]), "no two failures shown alike"
