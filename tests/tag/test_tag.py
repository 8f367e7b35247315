"""The tag stage on local folders, on PostgreSQL and SQLite: idempotent, incremental, hostile-proof."""

from __future__ import annotations

import json

import os
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from PIL import Image

from fixtures import hostile
from fixtures.tagging import count, rows, run
from tasks.store import db
from tasks.store import results
from tasks.tag import sources
from tasks.tag import tag
from tasks.hashtags import lexicon
from tasks.hashtags.engine import HashtagEngine

pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")


def colour_folder(root: Path, count: int, colours=((200, 20, 20), (20, 200, 20), (20, 20, 200))) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = root / f"img{index:04d}.jpg"
        # textured: a tile of one flat colour is refused as blank
        hostile.textured(Image.new("RGB", (48, 40), colours[index % len(colours)])).save(path, quality=90)
        paths.append(path)
    return paths


def test_hostile_folder_every_file_tagged_or_failed_with_its_reason_and_second_run_adds_nothing(
        tmp_path, model, engine):
    expected = hostile.write_folder(tmp_path / "photos")
    first = run(tmp_path / "photos", model, engine)
    tagged = {uri for (uri,) in rows(engine, "SELECT image_uri FROM image_results")}
    abstained = {uri for (uri,) in rows(engine, "SELECT image_uri FROM image_labels WHERE label IS NULL")}
    failed = dict(rows(engine, "SELECT image_uri, reason FROM failed_images"))
    assert tagged | set(failed) == set(expected), "every listed file is accounted for, hidden ones are not"
    assert not tagged & set(failed)
    for path, (_, expect) in expected.items():
        if expect == hostile.TAGGED:
            assert path in tagged and path not in abstained, path
        elif expect == hostile.BLANK:  # a blank picture: a result with no confident label, never a failure
            assert path in abstained, path
        else:
            assert expect in failed[path], (path, failed.get(path))
    assert (first.tagged, first.failed, first.status) == (len(tagged), len(failed), "succeeded_with_failures")
    assert first.abstained == len(abstained) > 0
    tag_rows, result_rows = count(engine, "image_tags"), count(engine, "image_results")
    assert tag_rows >= (len(tagged) - len(abstained)) * 5
    assert not rows(engine, "SELECT * FROM image_tags WHERE label IS NULL"), "no hashtags without a label"

    second = run(tmp_path / "photos", model, engine)
    assert (second.tagged, second.failed, second.skipped) == (0, 0, len(expected))
    assert (count(engine, "image_tags"), count(engine, "image_results")) == (tag_rows, result_rows)
    assert count(engine, "failed_images") == len(failed)


def test_hostile_names_are_stored_verbatim(tmp_path, model, engine):
    folder = tmp_path / "names"
    folder.mkdir()
    for name in hostile.HOSTILE_NAMES:
        (folder / name).write_bytes(hostile.jpeg())
    run(folder, model, engine)
    stored = {uri for (uri,) in rows(engine, "SELECT DISTINCT image_uri FROM image_tags")}
    assert stored == {str(folder / name) for name in hostile.HOSTILE_NAMES}
    assert count(engine, "image_results") == len(hostile.HOSTILE_NAMES), "the DROP TABLE in a name did nothing"


def write_raw(path: bytes, data: bytes) -> None:
    with open(path, "wb") as file:
        file.write(data)


def assert_rerun_adds_nothing(folder, model, engine, first: dict) -> None:
    """A second run tags and fails nothing new and leaves every table as it was."""
    tables = ("image_results", "image_hashtags", "image_failures")  # image_hashtags: the view (sql/013)
    before = [count(engine, table) for table in tables]
    again = run(folder, model, engine)
    assert (again.tagged, again.skipped + again.failed) == (0, first.tagged + first.failed)
    assert [count(engine, table) for table in tables] == before


def test_file_names_that_are_not_utf8_are_tagged_under_escaped_text_and_lookalikes_stay_apart(
        tmp_path, model, engine):
    folder = tmp_path / "latin1"
    folder.mkdir()
    names = set(hostile.NON_UTF8_NAMES) | {name for pair in hostile.LOOKALIKE_NAMES for name in pair}
    for name in names:
        write_raw(os.fsencode(folder) + b"/" + name, hostile.jpeg())
    first = run(folder, model, engine)
    assert (first.tagged, first.failed, first.status) == (len(names), 0, "succeeded")
    shown = [uri for (uri,) in rows(engine, "SELECT image_uri FROM image_labels")]
    assert len(shown) == len(set(shown)) == len(names), "two byte names with alike texts are two texts"
    # b'caf\xe9.jpg' is shown escaped, and so is the storable b'caf\\xe9.jpg' that would read the same
    assert {str(folder) + "/caf\\xe9.jpg", str(folder) + "/caf\\\\xe9.jpg"} <= set(shown)
    raw_paths = {os.fsencode(folder) + b"/" + name for name in names}
    assert {sources.unescaped(text) for text in shown} == raw_paths, "every text shown gives its name back"
    escaped_rows = rows(engine, "SELECT image_uri, uri_text FROM image_results WHERE uri_text IS NOT NULL")
    assert len(escaped_rows) == len(hostile.NON_UTF8_NAMES) + 3  # + b"\xff.jpg", b"caf\\xe9.jpg", b"\\xff.jpg"
    for key, text in escaped_rows:  # the stored text gives the exact bytes back, and they give the key
        assert sources.unescaped(text) in raw_paths
        assert key == sources.image_key(sources.unescaped(text).decode("utf-8", "surrogateescape"))
    assert_rerun_adds_nothing(folder, model, engine, first)


@pytest.mark.parametrize("folder_name", hostile.NON_UTF8_FOLDERS)
def test_a_source_folder_whose_own_name_is_not_utf8_is_tagged(tmp_path, model, engine, folder_name):
    folder = os.fsencode(tmp_path) + b"/" + folder_name
    os.mkdir(folder)
    write_raw(folder + b"/dog.jpg", hostile.jpeg())
    first = run(os.fsdecode(folder), model, engine)
    assert (first.tagged, first.status) == (1, "succeeded")
    escaped = sources.escaped(os.fsdecode(folder))
    assert first.source == escaped and rows(engine, "SELECT source FROM tagging_runs") == [(escaped,)]
    assert rows(engine, "SELECT image_uri FROM image_labels") == [(escaped + "/dog.jpg",)]
    assert_rerun_adds_nothing(os.fsdecode(folder), model, engine, first)


def test_symbolic_link_loops_and_dangling_links_fail_alone(tmp_path, model, engine):
    expected = hostile.symlinks(tmp_path / "links")
    first = run(tmp_path / "links", model, engine)
    assert (first.tagged, first.failed, first.status) == (1, len(expected), "succeeded_with_failures")
    failed = dict(rows(engine, "SELECT image_uri, reason FROM failed_images"))
    assert {uri: reason for uri, reason in failed.items()} .keys() == {str(tmp_path / "links" / n) for n in expected}
    for name, reason in expected.items():
        assert reason in failed[str(tmp_path / "links" / name)]
    assert_rerun_adds_nothing(tmp_path / "links", model, engine, first)


def test_a_path_longer_than_an_index_entry_is_tagged(tmp_path, model, engine):
    path = hostile.long_path(tmp_path / "deep")
    assert len(path) > 3000
    first = run(tmp_path / "deep", model, engine)
    assert (first.tagged, first.status) == (1, "succeeded")
    assert rows(engine, "SELECT image_uri FROM image_tags LIMIT 1") == [(os.fsdecode(path),)]
    key = rows(engine, "SELECT image_uri FROM image_results")[0][0]
    assert key == sources.image_key(os.fsdecode(path)) and key.startswith(sources.HASHED_KEY_PREFIX)
    assert_rerun_adds_nothing(tmp_path / "deep", model, engine, first)


def test_names_with_terminal_escapes_are_stored_as_they_are_and_printed_escaped(tmp_path, model, engine, capsys,
                                                                                monkeypatch):
    from tasks.cli import tag as tag_command

    folder = tmp_path / "terminal"
    folder.mkdir()
    for name in hostile.TERMINAL_NAMES:
        (folder / name).write_bytes(hostile.jpeg())
    (folder / "\x1b[31mred-broken.jpg").write_bytes(b"not a picture")
    first = run(folder, model, engine)
    assert (first.tagged, first.failed) == (len(hostile.TERMINAL_NAMES), 1)
    stored = {uri for (uri,) in rows(engine, "SELECT image_uri FROM image_labels")}
    assert stored == {str(folder / name) for name in hostile.TERMINAL_NAMES}
    capsys.readouterr()
    monkeypatch.setattr(tag_command, "SHOW_IMAGES", 20)  # every name; restored after the test
    tag_command.print_results(first, engine.url.render_as_string(hide_password=False))
    printed = capsys.readouterr().out
    assert "\x1b" not in printed and "\x07" not in printed and "\u202e" not in printed
    assert "\\x1b[2J\\x1b[Hclear-screen.jpg" in printed and "line\\nbreak.jpg" in printed
    assert "FAILED" in printed and "\\x1b[31mred-broken.jpg" in printed


def test_symlinks_that_leave_the_root_are_not_followed(tmp_path, model, engine):
    outside = colour_folder(tmp_path / "outside", 2)
    root = tmp_path / "root"
    inside = colour_folder(root, 1)
    (root / "escape.jpg").symlink_to(outside[0])
    (root / "escape-folder").symlink_to(tmp_path / "outside", target_is_directory=True)
    (root / "alias.jpg").symlink_to(inside[0])
    (root / "loop").symlink_to(root, target_is_directory=True)
    listed = [ref.uri for ref in sources.LocalSource(root).list()]
    assert listed == [str(root / "alias.jpg"), str(inside[0])]
    assert run(root, model, engine).tagged == 2


def test_new_and_changed_files_are_tagged_and_only_they(tmp_path, model, engine):
    paths = colour_folder(tmp_path / "photos", 10)
    assert run(tmp_path / "photos", model, engine).tagged == 10
    # was red: a new picture at the same path
    hostile.textured(Image.new("RGB", (48, 40), (20, 200, 20))).save(paths[0])
    colour_folder(tmp_path / "photos" / "more", 3)
    summary = run(tmp_path / "photos", model, engine)
    assert (summary.tagged, summary.skipped) == (4, 9)
    assert count(engine, "image_results") == 13, "one result per path: the old picture's rows are gone"
    assert rows(engine, "SELECT DISTINCT label FROM image_tags WHERE image_uri = :uri",
                uri=str(paths[0])) == [("frog",)]


def test_a_fixed_file_leaves_failed_images(tmp_path, model, engine):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "later.jpg").write_bytes(b"not yet")
    run(folder, model, engine)
    assert count(engine, "failed_images") == 1
    (folder / "later.jpg").write_bytes(hostile.jpeg())
    assert run(folder, model, engine).tagged == 1
    assert count(engine, "failed_images") == 0


def test_limit_then_the_rest(tmp_path, model, engine):
    colour_folder(tmp_path / "photos", 20)
    first = run(tmp_path / "photos", model, engine, limit=5)
    assert (first.tagged, count(engine, "image_results")) == (5, 5)
    second = run(tmp_path / "photos", model, engine)
    assert (second.tagged, second.skipped, count(engine, "image_results")) == (15, 5, 20)


def test_dry_run_writes_nothing(tmp_path, model, db_url):
    colour_folder(tmp_path / "photos", 9)
    engine = db.engine(db_url)
    summary = run(tmp_path / "photos", model, engine, dry_run=True)
    assert (summary.status, summary.seen, summary.tagged) == ("dry-run", 9, 9)
    assert not sa.inspect(engine).has_table("image_results"), "not even the schema"
    db.ensure_schema(engine)
    run(tmp_path / "photos", model, engine, limit=4)
    again = run(tmp_path / "photos", model, engine, dry_run=True)
    assert (again.tagged, again.skipped) == (5, 4)
    assert count(engine, "image_results") == 4 and count(engine, "tagging_runs") == 1


def test_a_new_model_tags_the_images_it_has_not_tagged_and_the_views_show_one_model(tmp_path, tiny_models,
                                                                                     engine):
    first, second = tiny_models
    colour_folder(tmp_path / "photos", 6)
    (tmp_path / "photos" / "broken.jpg").write_bytes(b"broken")
    run(tmp_path / "photos", first, engine)
    retagged = run(tmp_path / "photos", second, engine)  # incremental per model: no flag needed
    assert (retagged.tagged, retagged.failed, retagged.skipped) == (6, 0, 1)
    history = rows(engine, "SELECT model_version, COUNT(DISTINCT image_uri) FROM image_tags_all "
                           "GROUP BY model_version ORDER BY model_version")
    assert history == [(first.model_id, 6), (second.model_id, 6)]
    # no champion in this registry: each image shows the model that tagged it last
    assert rows(engine, "SELECT model_version, COUNT(DISTINCT image_uri) FROM image_tags "
                        "GROUP BY model_version") == [(second.model_id, 6)]
    assert run(tmp_path / "photos", second, engine).tagged == 0


def test_run_record_matches_the_rows(tmp_path, model, engine):
    colour_folder(tmp_path / "photos", 11)
    (tmp_path / "photos" / "junk.jpg").write_bytes(b"junk")
    summary = run(tmp_path / "photos", model, engine)
    (record,) = rows(engine, "SELECT source, model_version, seen, tagged, skipped, failed, status, error, "
                             "finished_at FROM tagging_runs WHERE run_id = :run_id", run_id=summary.run_id)
    assert record[:8] == (str(tmp_path / "photos"), model.model_id, 12, 11, 0, 1, "succeeded_with_failures", None)
    assert summary.status == "succeeded_with_failures", "one failed file: the record says so at a glance"
    (tmp_path / "photos" / "junk.jpg").unlink()
    clean = run(tmp_path / "photos", model, engine)
    assert (clean.failed, clean.status) == (0, "succeeded")
    assert record.finished_at is not None


def test_unreadable_and_oversized_files_fail_with_a_reason_and_are_tried_again(tmp_path, model, engine,
                                                                             monkeypatch):
    paths = colour_folder(tmp_path / "photos", 3)
    paths[2].write_bytes(hostile.noisy_jpeg())  # about 40 KB
    original = sources.LocalSource.read

    def read(self, ref, max_bytes):
        if ref.uri == str(paths[0]):
            raise sources.UnreadableImage("cannot read the file: Permission denied")
        return original(self, ref, max_bytes)

    monkeypatch.setattr(sources.LocalSource, "read", read)
    summary = run(tmp_path / "photos", model, engine, max_bytes=20_000)
    assert (summary.tagged, summary.failed) == (1, 2)
    reasons = dict(rows(engine, "SELECT image_uri, reason FROM failed_images"))
    assert reasons[str(paths[0])] == "cannot read the file: Permission denied"
    assert reasons[str(paths[2])].startswith("too large")
    monkeypatch.setattr(sources.LocalSource, "read", original)
    assert run(tmp_path / "photos", model, engine).tagged == 2, "failures without a content hash are retried"


def test_hashtags_are_looked_up_once_per_label_per_run(tmp_path, model, engine):
    calls = []

    class CountingLexicon(lexicon.LexiconProvider):
        def candidates(self, label):
            calls.append(label)
            return super().candidates(label)

    colour_folder(tmp_path / "photos", 30)
    hashtags = HashtagEngine([CountingLexicon()])
    tag.run(str(tmp_path / "photos"), model, hashtags, engine, tag.TagConfig(batch_size=4))
    assert sorted(calls) == sorted(set(calls)) and {"cat", "frog", "ship"} <= set(calls)


def test_shards_split_a_source_without_overlap(tmp_path, model, engine):
    colour_folder(tmp_path / "photos", 40)
    counts = [run(tmp_path / "photos", model, engine, shard=(index, 3)).tagged for index in range(3)]
    assert sum(counts) == 40 and all(counts)
    assert count(engine, "image_results") == 40


def test_a_missing_folder_is_a_source_error(tmp_path):
    with pytest.raises(sources.SourceError, match="no such file or folder"):
        sources.open_source(str(tmp_path / "nowhere"))


def test_a_single_file_can_be_a_source(tmp_path, model, engine):
    (path,) = colour_folder(tmp_path / "photos", 1)
    assert run(path, model, engine).tagged == 1


def test_workers_and_batch_sizes_give_the_same_rows(tmp_path, model, db_url, sqlite_url):
    hostile.write_folder(tmp_path / "photos")
    outcomes = []
    for url, config in ((db_url, {"workers": 1, "batch_size": 1}), (sqlite_url, {"workers": 4, "batch_size": 64})):
        if url == sqlite_url and db_url == sqlite_url:
            url = f"sqlite:///{tmp_path / 'other.db'}"
        engine = db.ensure_schema(db.engine(url))
        run(tmp_path / "photos", model, engine, **config)
        outcomes.append((rows(engine, "SELECT image_uri, hashtag_rank, hashtag, label FROM image_tags "
                                      "ORDER BY image_uri, hashtag_rank"),
                         rows(engine, "SELECT image_uri, reason FROM failed_images ORDER BY image_uri")))
    assert outcomes[0] == outcomes[1]


def test_hashtags_unnested_from_their_array_keep_the_labels_exact_confidence(tmp_path, model, db_url):
    """image_hashtags unnests image_results.hashtags (sql/013): the top label's hashtags carry the very
    confidence image_labels shows, ranks run 1..n, and an abstention has no hashtag rows."""
    colour_folder(tmp_path / "photos", 6)
    engine = db.ensure_schema(db.engine(db_url))
    run(tmp_path / "photos", model, engine, min_confidence=0.0)
    labelled = rows(engine, "SELECT image_uri, label, confidence FROM image_labels ORDER BY image_uri")
    assert len(labelled) == 6
    for uri, label, confidence in labelled:
        tags = rows(engine, "SELECT hashtag_rank, label, confidence FROM image_tags WHERE image_uri = :uri "
                            "ORDER BY hashtag_rank", uri=uri)
        assert [rank for rank, _, _ in tags] == list(range(1, len(tags) + 1)) and tags
        assert {tag_confidence for _, tag_label, tag_confidence in tags if tag_label == label} == {confidence}
    run(tmp_path / "photos", model, engine, min_confidence=1.0)  # every image re-decided: no confident label
    assert rows(engine, "SELECT COUNT(*) FROM image_hashtags") == [(0,)]
    assert rows(engine, "SELECT DISTINCT hashtags FROM image_results") == [("[]",)]


def test_every_example_query_runs_on_the_views_after_a_tagging_run(tmp_path, tiny_models, engine):
    first, second = tiny_models
    colour_folder(tmp_path / "photos", 9)
    run(tmp_path / "photos", first, engine)
    (tmp_path / "photos" / "broken.jpg").write_bytes(b"broken")
    run(tmp_path / "photos", second, engine)
    today = rows(engine, "SELECT MAX(tagged_at) FROM image_tags")[0][0]
    day = str(today)[:10]
    queries = {path.name[:-4]: path.read_text() for path in (db.sql_dir() / "queries").iterdir()
               if path.name.endswith(".sql")}
    params = {
        "top_hashtags_per_day": {"first_day": day, "last_day": day, "top": 3},
        "images_per_label": {},
        "low_confidence_images": {"threshold": 1.01, "top": 100},
        "failures_of_last_run": {},
        "compare_model_versions": {"old_model": first.model_id, "new_model": second.model_id},
        "abstained_images": {"top": 10},
        "reviewed_accuracy": {},
    }
    assert set(queries) == set(params), "each query file is exercised here"
    answers = {name: rows(engine, queries[name], **params[name]) for name in queries}
    assert [(row.place, row.images) for row in answers["top_hashtags_per_day"]] == [(1, 3), (2, 3), (3, 3)]
    assert answers["top_hashtags_per_day"][0].tagged_day == day
    # the current results: each image once, as the model that tagged it last labelled it
    assert {(row.model_version, row.label, row.images) for row in answers["images_per_label"]} == {
        (second.model_id, label, 3) for label in ("cat", "frog", "ship")}
    assert len(answers["low_confidence_images"]) == 9
    assert [(Path(row.image_uri).name, row.reason) for row in answers["failures_of_last_run"]] == [
        ("broken.jpg", "not an image: a text file")]
    assert len(answers["compare_model_versions"]) == 9
    assert {row.verdict for row in answers["compare_model_versions"]} == {"same"}
    assert answers["abstained_images"] == []  # these models state no threshold: they never abstain
    assert answers["reviewed_accuracy"] == []  # nobody has reviewed an image yet


def test_comparing_model_versions_calls_two_abstentions_the_same(tmp_path, model, engine):
    """No confident label from both models is no change: NULL = NULL is not true in SQL (a user trial
    saw every blank picture marked 'changed' when comparing a model with itself)."""
    colour_folder(tmp_path / "photos", 3)
    Image.new("RGB", (48, 40), (128, 128, 128)).save(tmp_path / "photos" / "grey.png")  # blank: abstains
    run(tmp_path / "photos", model, engine)
    query = (db.sql_dir() / "queries" / "compare_model_versions.sql").read_text()
    answer = rows(engine, query, old_model=model.model_id, new_model=model.model_id)
    assert [(Path(row.image_uri).name, row.old_label, row.verdict) for row in answer if row.old_label is None] == [
        ("grey.png", None, "same")]
    assert len(answer) == 4 and {row.verdict for row in answer} == {"same"}


def test_abstentions_are_results_with_null_labels_and_a_new_threshold_redecides_from_stored_scores(
        tmp_path, tiny_models, engine, monkeypatch):
    model = tiny_models[0]
    colour_folder(tmp_path / "photos", 6)
    unsure = run(tmp_path / "photos", model, engine, min_confidence=1.0)  # no probability reaches 1
    assert (unsure.tagged, unsure.abstained, unsure.failed) == (6, 6, 0)
    stored = rows(engine, "SELECT label, confidence, top_labels FROM image_labels")
    assert len(stored) == 6 and all(label is None and 0 < confidence < 1 for label, confidence, _ in stored)
    assert count(engine, "image_tags") == 0, "no label, no label hashtags"
    assert len(rows(engine, (db.sql_dir() / "queries" / "abstained_images.sql").read_text(), top=10)) == 6
    assert count(engine, "failed_images") == 0, "an abstention is never a failure"

    calls = []
    monkeypatch.setattr(model, "predict", lambda images: calls.append(len(images)))
    sure = run(tmp_path / "photos", model, engine, min_confidence=0.0)
    assert (sure.tagged, sure.skipped, sure.redecided, calls) == (0, 6, 6, []), "no model call"
    labelled = rows(engine, "SELECT label, confidence, top_labels FROM image_labels ORDER BY image_uri")
    assert all(label == json.loads(top)[0][0] for label, _, top in labelled)
    assert count(engine, "image_tags") >= 6
    assert [confidence for _, confidence, _ in sorted(stored)] == pytest.approx(
        [confidence for _, confidence, _ in sorted(labelled)]), "the stored scores decided it"


def test_a_new_threshold_changes_only_the_source_and_shard_tagged_and_moves_no_result_to_the_new_run(
        tmp_path, model, engine):
    """`tag DIR --min-confidence` re-decides DIR's results only (not photos2/, whose path starts the same,
    nor another folder) and only its shard's; each result keeps the run that tagged it and when."""
    for name in ("photos", "photos2", "other"):
        colour_folder(tmp_path / name, 6)
    earlier = {name: run(tmp_path / name, model, engine, min_confidence=1.0).run_id
               for name in ("photos", "photos2", "other")}  # every image abstains
    before = rows(engine, "SELECT image_uri, run_id, tagged_at FROM image_results ORDER BY image_uri")

    paths = [str(path) for path in (tmp_path / "photos").iterdir()]
    # a shard holding some of the six images, not all, wherever tmp_path is (the URIs decide the shards)
    shard = next((0, count) for count in range(2, 64)
                 if 0 < sum(tag.in_shard(path, (0, count)) for path in paths) < 6)
    in_shard = {path for path in paths if tag.in_shard(path, shard)}
    sharded = run(tmp_path / "photos", model, engine, min_confidence=0.0, shard=shard)
    assert sharded.redecided == len(in_shard)
    labelled = {uri for (uri,) in rows(engine, "SELECT image_uri FROM image_results WHERE label IS NOT NULL")}
    assert labelled == in_shard

    whole = run(tmp_path / "photos", model, engine, min_confidence=0.0)
    assert whole.redecided == 6 - len(in_shard)
    labelled = {Path(uri).parent.name for (uri,) in rows(
        engine, "SELECT image_uri FROM image_results WHERE label IS NOT NULL")}
    assert labelled == {"photos"}, "photos2/ and other/ keep their decisions"
    assert rows(engine, "SELECT image_uri, run_id, tagged_at FROM image_results ORDER BY image_uri") == before
    assert {run_id for (run_id,) in rows(engine, "SELECT DISTINCT run_id FROM image_results")} == set(
        earlier.values()), "no result moved to the runs that only re-decided"


class HeldSource(sources.LocalSource):
    """A folder whose listing waits for `release`: a run that is live, holding its source."""

    def __init__(self, root, release):
        super().__init__(root)
        self.release = release

    def list(self):
        assert self.release.wait(60)
        yield from super().list()


def test_a_second_run_on_the_same_source_is_refused_while_the_first_lives(tmp_path, model, engine):
    import threading

    colour_folder(tmp_path / "photos", 5)
    release = threading.Event()
    outcome: dict = {}  # the first run's RunSummary, from its thread
    thread = threading.Thread(target=lambda: outcome.update(first=tag.run(
        str(tmp_path / "photos"), model, HashtagEngine(), engine, tag.TagConfig(batch_size=7),
        source=HeldSource(tmp_path / "photos", release))))
    thread.start()
    try:
        for _ in range(500):
            if rows(engine, "SELECT COUNT(*) FROM tagging_runs WHERE status = 'running'")[0][0]:
                break
            time.sleep(0.01)
        with pytest.raises(results.AnotherRunActive, match="another run is active"):
            run(tmp_path / "photos", model, engine)
        other = run(tmp_path / "photos", model, engine, shard=(0, 2))  # another shard is another job
        assert other.status == "succeeded"
    finally:
        release.set()
        thread.join(60)
    first = outcome["first"]
    assert first.status == "succeeded" and first.tagged + other.tagged == 5
    assert count(engine, "tagging_runs") == 2, "the refused run wrote nothing"
    assert run(tmp_path / "photos", model, engine).tagged == 0


def test_runs_whose_process_is_gone_are_marked_interrupted_by_the_next_run(tmp_path, model, engine):
    import datetime as dt
    import socket
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    now = dt.datetime.now(dt.timezone.utc)
    runs = [("killed-here", socket.gethostname(), dead.pid, now),
            ("silent-elsewhere", "other-host", 4242, now - dt.timedelta(hours=1)),
            ("alive-elsewhere", "other-host", 4243, now)]
    with engine.begin() as connection:
        for run_id, host, pid, beat in runs:
            connection.execute(sa.text(
                "INSERT INTO tagging_runs (run_id, source, model_version, started_at, status, host, pid, heartbeat_at) "
                "VALUES (:run_id, :source, 'm', :at, 'running', :host, :pid, :at)"),
                {"run_id": run_id, "source": f"/elsewhere/{run_id}", "at": beat, "host": host, "pid": pid})
    colour_folder(tmp_path / "photos", 2)
    summary = run(tmp_path / "photos", model, engine)
    states = dict(rows(engine, "SELECT run_id, status FROM tagging_runs"))
    assert states == {"killed-here": "interrupted", "silent-elsewhere": "interrupted",
                      "alive-elsewhere": "running", summary.run_id: "succeeded"}
    errors = dict(rows(engine, "SELECT run_id, error FROM tagging_runs WHERE status = 'interrupted'"))
    assert f"process {dead.pid} on {socket.gethostname()} is gone" in errors["killed-here"]
    assert "no heartbeat for 60 min from other-host:4242" in errors["silent-elsewhere"]
    host, pid, beat = rows(engine, "SELECT host, pid, heartbeat_at FROM tagging_runs WHERE run_id = :r",
                           r=summary.run_id)[0]
    assert (host, pid) == (socket.gethostname(), os.getpid()) and beat is not None


def test_hashtag_answers_for_a_file_whose_name_is_not_utf8_prints_it_escaped_and_abstains_on_a_blank(
        tmp_path, tiny_models, bin_dir):
    import subprocess

    folder = os.fsencode(tmp_path)
    write_raw(folder + b"/chat-caf\xe9.jpg", hostile.jpeg())
    write_raw(folder + b"/\x1b[2Jbroken.jpg", b"not a picture")
    write_raw(folder + b"/blank.png", hostile.alpha_cases()["blank-white.png"][0])
    env = {**os.environ, "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8", "HASHTAGGER_HOME": str(tmp_path)}
    answered = subprocess.run([bin_dir / "hashtag", "--model", tiny_models[0].metadata.path,
                               folder + b"/chat-caf\xe9.jpg", folder + b"/\x1b[2Jbroken.jpg",
                               folder + b"/blank.png"],
                              env=env, capture_output=True, timeout=120)
    stdout, stderr = answered.stdout.decode(), answered.stderr.decode()
    assert answered.returncode == 1 and "Traceback" not in stderr, stderr
    assert f"{tmp_path}/chat-caf\\xe9.jpg: cat" in stdout
    assert "\x1b" not in stdout + stderr and f"{tmp_path}/\\x1b[2Jbroken.jpg: not an image" in stderr
    assert f"{tmp_path}/blank.png: no confident label (candidates: " in stdout  # not a failure


def test_broken_metadata_is_a_warning_naming_the_file_not_a_failure(tmp_path, model, engine, caplog):
    folder = tmp_path / "metadata"
    folder.mkdir()
    cases = hostile.metadata_cases()
    for name in ("exif-unit-rational.jpg", "exif-xresolution-byte.jpg", "png-huge-ztxt.png"):
        (folder / name).write_bytes(cases[name][0])
    with caplog.at_level("WARNING", logger="tasks.tag.tag"):
        first = run(folder, model, engine)
    assert (first.tagged, first.failed) == (3, 0)
    warned = [record.getMessage() for record in caplog.records if record.name == "tasks.tag.tag"]
    assert any(str(folder / "exif-unit-rational.jpg") in text and "orientation 6 applied" in text for text in warned)
    assert any(str(folder / "png-huge-ztxt.png") in text and "metadata skipped" in text for text in warned)
    assert not any(record.exc_info for record in caplog.records), "no traceback"
    assert_rerun_adds_nothing(folder, model, engine, first)
