"""Issue 24: the nightly DAG's functions list the source once a night whatever the shard count; shards read
the manifest; reruns add nothing. On PostgreSQL and SQLite, over a folder and a bucket (moto)."""

from __future__ import annotations

import uuid

import boto3
import pytest
import sqlalchemy as sa

from fixtures import hostile
from fixtures.s3server import MotoS3, aws_env, moto  # noqa: F401  fixtures
from tasks import pipeline
from tasks.tag import plan, s3, sources

KEY = "nightly-20261206T020000Z"


@pytest.fixture
def listings(monkeypatch):
    """How many times a folder or a bucket is listed, across every Source object (one list() each)."""
    counted: list[str] = []
    for cls in (sources.LocalSource, s3.S3Source):
        def counting(self, original=cls.list):
            counted.append(self.uri)
            return original(self)

        monkeypatch.setattr(cls, "list", counting)
    return counted


def scalar(url: str, sql: str):
    with sa.create_engine(url).connect() as connection:
        return connection.execute(sa.text(sql)).scalar()


def night(source: str, model_dir, db_url: str, shards: int, key: str = KEY, verify: bool = False,
          min_shard_images: int = 1) -> tuple[dict, list]:
    """The nightly DAG's find_new_images, then each order's tag_shard, as the DAG wires them (by default
    every shard asked runs, however little work: these tests are about shards, not about small nights)."""
    found = pipeline.plan_night(source, str(model_dir), key, shards, db_url, verify=verify,
                                min_shard_images=min_shard_images)
    planned = found["shards"]  # fewer than asked for a small night
    summaries = [pipeline.tag_shard(source, str(model_dir), shard, planned,
                                    pipeline.shard_run_id(key, shard, planned), db_url, manifest=key, verify=verify)
                 for shard in range(planned) if found["new"]]
    return found, summaries


def folder_of(root, count: int):
    root.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        (root / f"img{index:03d}.jpg").write_bytes(hostile.jpeg((40, 32), (200, (index * 23) % 256, 40)))
    (root / "notes.txt").write_text("a sidecar: counted, never tagged")
    return root


@pytest.mark.parametrize("shards", [1, 4])
def test_a_night_lists_the_folder_once_for_any_shard_count_and_a_rerun_adds_nothing(
        tmp_path, model_dir, results_db_url, hashtagger_home, listings, shards):
    folder = folder_of(tmp_path / "incoming", 13)
    found, summaries = night(str(folder), model_dir, results_db_url, shards)
    assert listings == [str(folder)], "one listing for the whole night"
    assert (found["seen"], found["new"], found["not_images"]) == (13, 13, 1)
    assert sum(summary["tagged"] for summary in summaries) == 13
    assert scalar(results_db_url, "SELECT COUNT(*) FROM image_results") == 13
    assert sum(summary["not_images"] for summary in summaries) >= 1
    total = pipeline.summarize_run(KEY, shards, results_db_url).as_dict()
    assert (total["seen"], total["tagged"], total["not_images"]) == (13, 13, 1)

    listings.clear()
    again, summaries = night(str(folder), model_dir, results_db_url, shards)  # the same night, cleared
    assert (listings, again["new"], again["done"], summaries) == ([str(folder)], 0, 13, [])
    assert scalar(results_db_url, "SELECT COUNT(*) FROM image_results") == 13
    # this attempt's totals: what the first attempt tagged is done now
    total = pipeline.summarize_run(KEY, shards, results_db_url).as_dict()
    assert (total["seen"], total["tagged"], total["skipped"], total["shard_runs"], total["not_images"]) == (
        13, 0, 13, 0, 1)

    (folder / "late.jpg").write_bytes(hostile.jpeg((40, 32), (10, 10, 240)))
    listings.clear()
    later, summaries = night(str(folder), model_dir, results_db_url, shards, key="nightly-20261207T020000Z")
    assert (listings, later["new"], sum(summary["tagged"] for summary in summaries)) == ([str(folder)], 1, 1)
    assert sum(summary["seen"] for summary in summaries) == 1, "the shards saw only the manifest's work"
    assert scalar(results_db_url, "SELECT COUNT(*) FROM image_results") == 14


@pytest.mark.parametrize(("work", "asked", "planned"), [(0, 4, 1), (1, 4, 1), (256, 4, 1), (257, 4, 2),
                                                         (1024, 4, 4), (100_000, 4, 4), (300, 1, 1)])
def test_a_small_night_plans_one_shard_per_batch_of_work(work, asked, planned):
    assert plan.planned_shards(work, asked) == planned


def test_a_small_night_runs_fewer_shards_and_its_summary_finds_them(
        tmp_path, model_dir, results_db_url, hashtagger_home, listings):
    folder = folder_of(tmp_path / "incoming", 13)
    # 13 images of work, a shard worth it from 5: 3 shards of the 8 asked
    found, summaries = night(str(folder), model_dir, results_db_url, 8, key="nightly-small", min_shard_images=5)
    assert found["shards"] == 3
    assert [summary["run_id"] for summary in summaries] == [f"nightly-small-shard{shard}of3" for shard in range(3)]
    assert sum(summary["seen"] for summary in summaries) == 13
    total = pipeline.summarize_run("nightly-small", 8, results_db_url).as_dict()
    assert (total["tagged"], total["shard_runs"], total["run_ids"]) == (
        13, 3, [summary["run_id"] for summary in summaries])
    assert scalar(results_db_url, "SELECT shards FROM night_manifests WHERE run_key = 'nightly-small'") == 3

    for extra in range(4):  # cleared, with 4 more images: planned again over fewer shards than its first try
        (folder / f"late{extra}.jpg").write_bytes(hostile.jpeg((40, 32), (10, 60 * extra, 240)))
    again, summaries = night(str(folder), model_dir, results_db_url, 8, key="nightly-small",
                             min_shard_images=plan.MIN_SHARD_WORK)
    assert (again["shards"], again["new"], [summary["run_id"] for summary in summaries]) == (
        1, 4, ["nightly-small-shard0of1"])
    total = pipeline.summarize_run("nightly-small", 8, results_db_url).as_dict()
    assert (total["seen"], total["tagged"], total["skipped"], total["run_ids"]) == (
        17, 4, 13, ["nightly-small-shard0of1"])


def test_a_verify_night_reads_everything_once_listed(tmp_path, model_dir, results_db_url, hashtagger_home,
                                                     listings, monkeypatch):
    folder = folder_of(tmp_path / "incoming", 6)
    night(str(folder), model_dir, results_db_url, 2)
    read: list[str] = []
    original = sources.LocalSource.read
    monkeypatch.setattr(sources.LocalSource, "read",
                        lambda self, ref, max_bytes: read.append(ref.uri) or original(self, ref, max_bytes))
    listings.clear()
    found, summaries = night(str(folder), model_dir, results_db_url, 2, key="nightly-verify", verify=True)
    assert (len(listings), found["new"], len(read)) == (1, 6, 6)
    assert sum(summary["tagged"] for summary in summaries) == 0, "the same bytes: nothing tagged again"


def test_a_shard_without_a_complete_manifest_refuses_to_guess(tmp_path, model_dir, results_db_url, hashtagger_home):
    folder = folder_of(tmp_path / "incoming", 2)
    with pytest.raises(Exception, match="no complete manifest"):
        pipeline.tag_shard(str(folder), str(model_dir), 0, 1, "nightly-missing-shard0of1", results_db_url,
                           manifest="nightly-missing")


def test_a_shard_of_another_count_than_planned_refuses_to_skip_images(
        tmp_path, model_dir, results_db_url, hashtagger_home):
    folder = folder_of(tmp_path / "incoming", 6)
    found = pipeline.plan_night(str(folder), str(model_dir), "nightly-mismatch", 4, results_db_url)
    assert found["shards"] == 1  # 6 images: a small night
    with pytest.raises(Exception, match="split over 1 shards, not 4"):  # 4 would keep a quarter of shard 0's
        pipeline.tag_shard(str(folder), str(model_dir), 0, 4, "nightly-mismatch-shard0of4", results_db_url,
                           manifest="nightly-mismatch")
    assert scalar(results_db_url, "SELECT COUNT(*) FROM image_results") == 0


def test_a_bad_least_work_per_shard_is_refused_before_the_listing(
        tmp_path, model_dir, results_db_url, hashtagger_home, listings):
    folder = folder_of(tmp_path / "incoming", 2)
    for bad in (0, -3):
        with pytest.raises(ValueError, match="at least 1 image"):
            pipeline.plan_night(str(folder), str(model_dir), "nightly-bad", 2, results_db_url, min_shard_images=bad)
    assert listings == []


def test_a_night_lists_the_bucket_once_and_reads_nothing_the_second_time(
        moto, model_dir, results_db_url, hashtagger_home, listings, monkeypatch):  # noqa: F811
    name = f"photos-{uuid.uuid4().hex[:10]}"
    client = boto3.client("s3")
    client.create_bucket(Bucket=name)
    for index in range(9):
        client.put_object(Bucket=name, Key=f"in/img{index}.jpg", Body=hostile.jpeg(colour=(200, index * 20, 20)))
    source = f"s3://{name}/in/"
    gets: list[str] = []
    original = s3.S3Source.read
    monkeypatch.setattr(s3.S3Source, "read", lambda self, ref, max_bytes: gets.append(ref.uri)
                        or original(self, ref, max_bytes))
    found, summaries = night(source, model_dir, results_db_url, 4)
    assert (len(listings), found["new"], len(gets), sum(s["tagged"] for s in summaries)) == (1, 9, 9, 9)
    stored = scalar(results_db_url, "SELECT COUNT(*) FROM image_files WHERE etag IS NOT NULL "
                                    "AND last_modified IS NOT NULL")
    assert stored == 9
    listings.clear(), gets.clear()
    again, summaries = night(source, model_dir, results_db_url, 4, key="nightly-2")
    assert (len(listings), again["new"], gets, summaries) == (1, 0, [], [])


def test_already_done_is_one_anti_join_per_chunk_not_a_query_per_image(
        tmp_path, model_dir, results_db_url, hashtagger_home, monkeypatch):
    from tasks.store import files

    folder = folder_of(tmp_path / "incoming", 13)
    night(str(folder), model_dir, results_db_url, 2)
    monkeypatch.setattr(files, "LOOKUP_CHUNK", 4)
    statements: list[str] = []
    engine = pipeline.results_engine(results_db_url)  # the engine plan_night uses (one per URL)

    def record(connection, cursor, statement, *rest):
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        found = pipeline.plan_night(str(folder), str(model_dir), "nightly-chunks", 2, results_db_url)
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    lookups = [statement for statement in statements if "image_results" in statement]
    assert found["done"] == 13
    assert len(lookups) == 4 and all("WITH listed" in statement for statement in lookups), \
        "13 listed images in chunks of 4: four anti-joins, nothing else reads the results"
