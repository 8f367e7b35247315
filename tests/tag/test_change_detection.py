"""Issue 24: a night with nothing new reads no image; metadata decides what is read, content what is tagged;
--verify reads everything and finds what metadata missed. On PostgreSQL and SQLite."""

from __future__ import annotations

import io
import os

import pytest

from PIL import Image

from fixtures import hostile
from fixtures.tagging import count, rows, run
from tasks.tag import sources

COLOURS = ((200, 20, 20), (20, 200, 20), (20, 20, 200), (200, 200, 20), (20, 200, 200), (200, 20, 200),
           (120, 60, 20), (20, 60, 120), (60, 120, 20), (90, 90, 160))


def colour_folder(root, count: int, colours=COLOURS) -> list:
    """`count` small textured JPEGs named imgNNNN.jpg (a tile of one flat colour is refused as blank)."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = root / f"img{index:04d}.jpg"
        path.write_bytes(hostile.jpeg((48, 40), colours[index % len(colours)]))
        paths.append(path)
    return paths


@pytest.fixture
def reads(monkeypatch):
    """The local files each run reads, by path, as LocalSource.read opens them."""
    opened: list[str] = []
    original = sources.LocalSource.read

    def counting(self, ref, max_bytes):
        opened.append(ref.location or ref.uri)
        return original(self, ref, max_bytes)

    monkeypatch.setattr(sources.LocalSource, "read", counting)
    return opened


def test_a_second_run_reads_no_file_and_tags_nothing(tmp_path, model, engine, reads):
    paths = colour_folder(tmp_path / "photos", 9)
    first = run(tmp_path / "photos", model, engine)
    assert (first.tagged, len(reads)) == (9, 9)
    assert count(engine, "image_files") == 9
    reads.clear()
    second = run(tmp_path / "photos", model, engine)
    assert (second.tagged, second.skipped, second.seen) == (0, 9, 9)
    assert reads == [], "nothing new: no image is read"
    stored = dict(rows(engine, "SELECT image_uri, size FROM image_files"))
    assert stored == {str(path): path.stat().st_size for path in paths}


def test_a_touched_file_with_the_same_bytes_is_read_once_and_not_tagged_again(tmp_path, model, engine, reads):
    paths = colour_folder(tmp_path / "photos", 5)
    run(tmp_path / "photos", model, engine)
    results_before = rows(engine, "SELECT image_uri, content_hash, run_id FROM image_results ORDER BY image_uri")
    stat = paths[2].stat()
    os.utime(paths[2], ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # touched: same bytes
    reads.clear()
    touched = run(tmp_path / "photos", model, engine)
    assert (touched.tagged, touched.skipped) == (0, 5)
    assert reads == [str(paths[2])], "only the touched file is read (and hashed)"
    assert rows(engine, "SELECT image_uri, content_hash, run_id FROM image_results ORDER BY image_uri") \
        == results_before
    (mtime,) = rows(engine, "SELECT mtime_ns FROM image_files WHERE image_uri = :uri", uri=str(paths[2]))[0]
    assert mtime == paths[2].stat().st_mtime_ns, "its new metadata is stored"
    reads.clear()
    run(tmp_path / "photos", model, engine)
    assert reads == [], "and then it is not read again"


def test_a_file_rewritten_with_new_bytes_is_tagged_again(tmp_path, model, engine, reads):
    paths = colour_folder(tmp_path / "photos", 4)
    run(tmp_path / "photos", model, engine)
    other = colour_folder(tmp_path / "other", 4, colours=((240, 240, 20),))
    paths[1].write_bytes(other[0].read_bytes())
    reads.clear()
    again = run(tmp_path / "photos", model, engine)
    assert (again.tagged, again.skipped, reads) == (1, 3, [str(paths[1])])
    (stored,) = rows(engine, "SELECT content_hash FROM image_results WHERE image_uri = :uri", uri=str(paths[1]))
    assert stored[0] == rows(engine, "SELECT content_hash FROM image_files WHERE image_uri = :uri",
                             uri=str(paths[1]))[0][0]


def test_bytes_changed_under_the_same_size_and_mtime_are_missed_by_a_run_and_found_by_verify(
        tmp_path, model, engine, reads):
    paths = colour_folder(tmp_path / "photos", 4)
    run(tmp_path / "photos", model, engine)
    target = paths[3]
    stat = target.stat()
    # another picture, smaller, padded after its end marker to the same size (decoders stop there)
    replacement = io.BytesIO()
    hostile.textured(Image.new("RGB", (16, 16), (240, 240, 240))).save(replacement, "JPEG", quality=50)
    assert len(replacement.getvalue()) < stat.st_size
    with open(target, "r+b") as file:  # same size, same inode (written in place), mtime put back
        file.write(replacement.getvalue().ljust(stat.st_size, b"\0"))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (target.stat().st_size, target.stat().st_mtime_ns, target.stat().st_ino) == \
        (stat.st_size, stat.st_mtime_ns, stat.st_ino)
    old_hash = rows(engine, "SELECT content_hash FROM image_results WHERE image_uri = :uri", uri=str(target))[0][0]

    reads.clear()
    normal = run(tmp_path / "photos", model, engine)
    assert (normal.tagged, normal.failed, normal.skipped, reads) == (0, 0, 4, []), "missed by metadata"

    verified = run(tmp_path / "photos", model, engine, verify=True)
    assert sorted(reads) == sorted(map(str, paths)), "--verify reads every file"
    assert (verified.tagged, verified.failed, verified.skipped) == (1, 0, 3)
    new_hash = rows(engine, "SELECT content_hash FROM image_files WHERE image_uri = :uri", uri=str(target))[0][0]
    assert new_hash != old_hash
    assert rows(engine, "SELECT content_hash FROM image_results WHERE image_uri = :uri", uri=str(target)) \
        == [(new_hash,)], "the old bytes' result is gone, the new bytes' stored"
    reads.clear()
    after = run(tmp_path / "photos", model, engine)
    assert (after.tagged, after.failed, reads) == (0, 0, []), "repaired: the next night reads nothing"


def test_a_new_model_reads_what_its_predecessor_tagged(tmp_path, tiny_models, engine, reads):
    colour_folder(tmp_path / "photos", 3)
    run(tmp_path / "photos", tiny_models[0], engine)
    reads.clear()
    second = run(tmp_path / "photos", tiny_models[1], engine)
    assert (second.tagged, len(reads)) == (3, 3), "metadata says the bytes; the new model must still see them"


def test_a_renamed_file_is_not_read_and_keeps_its_results_under_its_new_name(tmp_path, model, engine, reads):
    paths = colour_folder(tmp_path / "photos", 4)
    run(tmp_path / "photos", model, engine)
    before = rows(engine, "SELECT label, confidence, top_labels, content_hash FROM image_results WHERE image_uri = :uri",
                  uri=str(paths[0]))
    (tmp_path / "photos" / "2026").mkdir()
    moved = tmp_path / "photos" / "2026" / "renamed.jpg"
    paths[0].rename(moved)
    linked = tmp_path / "photos" / "linked.jpg"
    os.link(paths[1], linked)  # a hard link: the same file under a second name
    reads.clear()
    again = run(tmp_path / "photos", model, engine)
    assert reads == [], "a rename or a hard link is found by its metadata: nothing read"
    assert (again.tagged, again.skipped, again.seen) == (0, 5, 5)
    assert rows(engine, "SELECT label, confidence, top_labels, content_hash FROM image_results WHERE image_uri = :uri",
                uri=str(moved)) == before
    assert {uri for (uri,) in rows(engine, "SELECT image_uri FROM image_files")} >= {str(moved), str(linked)}
    reads.clear()
    third = run(tmp_path / "photos", model, engine)
    assert (third.tagged, reads) == (0, [])


def test_a_file_renamed_over_another_replaces_its_results(tmp_path, model, engine, reads):
    paths = colour_folder(tmp_path / "photos", 3)
    run(tmp_path / "photos", model, engine)
    hash_of = dict(rows(engine, "SELECT image_uri, content_hash FROM image_results"))
    paths[0].replace(paths[2])  # mv img0000.jpg img0002.jpg: img0002 now holds img0000's bytes
    reads.clear()
    again = run(tmp_path / "photos", model, engine)
    assert (reads, again.tagged) == ([], 0)
    assert rows(engine, "SELECT content_hash FROM image_results WHERE image_uri = :uri", uri=str(paths[2])) \
        == [(hash_of[str(paths[0])],)], "the old bytes' result of img0002 is gone"


def _results(engine) -> dict:
    return dict(rows(engine, "SELECT image_uri, content_hash FROM image_results"))


def test_two_files_that_swap_names_keep_the_results_of_their_bytes(tmp_path, model, engine, reads):
    paths = colour_folder(tmp_path / "photos", 3)
    run(tmp_path / "photos", model, engine)
    hash_of = _results(engine)
    spare = tmp_path / "photos" / "spare"
    paths[0].rename(spare)
    paths[1].rename(paths[0])
    spare.rename(paths[1])  # img0000 <-> img0001, in the same batch
    reads.clear()
    again = run(tmp_path / "photos", model, engine)
    assert (reads, again.tagged, again.skipped) == ([], 0, 3)
    assert _results(engine) == {str(paths[0]): hash_of[str(paths[1])], str(paths[1]): hash_of[str(paths[0])],
                                str(paths[2]): hash_of[str(paths[2])]}


def test_a_chain_of_renames_across_batches_is_whole_after_the_next_run(tmp_path, model, engine, reads):
    """IMG_1 -> IMG_2 -> ... -> IMG_5, and a new IMG_1: with one image a batch, the new IMG_1 is tagged (and
    its old bytes' results dropped) before IMG_2, which holds those bytes now, is written."""
    paths = colour_folder(tmp_path / "photos", 5)
    run(tmp_path / "photos", model, engine)
    hash_of = _results(engine)
    shifted = tmp_path / "photos" / "img0005.jpg"
    for source, target in zip(reversed(paths), [shifted, *reversed(paths[1:])]):
        source.rename(target)
    paths[0].write_bytes(hostile.jpeg((52, 44), (30, 30, 30)))  # new bytes under the first name
    run(tmp_path / "photos", model, engine, batch_size=1)
    expected = {str(target): hash_of[str(source)] for source, target in zip(paths, [*paths[1:], shifted])}
    results = _results(engine)
    missing = {uri for uri in expected if results.get(uri) != expected[uri]}
    assert str(paths[0]) in results and results[str(paths[0])] not in hash_of.values()
    if missing:  # lost to an earlier batch: its signature was not stored, so the next run tags it
        run(tmp_path / "photos", model, engine, batch_size=1)
        results = _results(engine)
    assert {uri: results.get(uri) for uri in expected} == expected
    reads.clear()
    assert (run(tmp_path / "photos", model, engine).tagged, reads) == (0, [])


def test_a_file_rewritten_with_bytes_that_do_not_decode_loses_its_old_tags(tmp_path, model, engine, reads):
    paths = colour_folder(tmp_path / "photos", 3)
    run(tmp_path / "photos", model, engine)
    paths[1].write_bytes(b"not a picture any more")
    again = run(tmp_path / "photos", model, engine)
    assert (again.failed, again.skipped) == (1, 2)
    assert rows(engine, "SELECT label FROM image_results WHERE image_uri = :uri", uri=str(paths[1])) == [], \
        "the old bytes' tags went with them"
    assert len(rows(engine, "SELECT reason FROM image_failures WHERE image_uri = :uri", uri=str(paths[1]))) == 1
