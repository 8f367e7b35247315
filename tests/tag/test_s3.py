"""s3://bucket/prefix sources through boto3 against moto's S3 server on 127.0.0.1, and the S3 fault drills."""

from __future__ import annotations

import os
import subprocess
import uuid

import boto3
import botocore.session
import botocore.exceptions
import pytest
import sqlalchemy as sa

from fixtures import hostile, tiny_model
from fixtures.s3proxy import S3Proxy
from fixtures.s3server import MotoS3, aws_env, moto  # noqa: F401  fixtures
from tasks.store import db
from tasks.tag import predictor
from tasks.tag import s3
from tasks.tag import sources
from tasks.tag import tag
from tasks.hashtags.engine import HashtagEngine

pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")


@pytest.fixture
def bucket(moto):
    name = f"photos-{uuid.uuid4().hex[:10]}"
    client = boto3.client("s3")
    client.create_bucket(Bucket=name)
    return name, client


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return predictor.load(tiny_model.build(tmp_path_factory.mktemp("model") / "tiny"))


def fill(bucket, prefix="nightly/2026-11-27/", count=12) -> dict[str, str]:
    """Images, a broken file, hostile names, a folder marker, a hidden object and one outside the prefix."""
    name, client = bucket
    expected = {}
    for index in range(count):
        key = f"{prefix}{'sub/' if index % 2 else ''}img{index:03d}.jpg"
        client.put_object(Bucket=name, Key=key, Body=hostile.jpeg(colour=(200, index * 10, 20)))
        expected[f"s3://{name}/{key}"] = hostile.TAGGED
    for hostile_name in hostile.HOSTILE_NAMES[:8]:
        client.put_object(Bucket=name, Key=prefix + hostile_name, Body=hostile.jpeg(colour=(20, 20, 200)))
        expected[f"s3://{name}/{prefix}{hostile_name}"] = hostile.TAGGED
    client.put_object(Bucket=name, Key=prefix + "broken.jpg", Body=b"not a jpeg at all")
    expected[f"s3://{name}/{prefix}broken.jpg"] = "not an image"
    client.put_object(Bucket=name, Key=prefix + "empty.png", Body=b"")
    expected[f"s3://{name}/{prefix}empty.png"] = "empty file"
    client.put_object(Bucket=name, Key=prefix + "folder/", Body=b"")
    client.put_object(Bucket=name, Key=prefix + ".thumbs/img000.jpg", Body=hostile.jpeg())
    client.put_object(Bucket=name, Key="elsewhere/img.jpg", Body=hostile.jpeg())
    return expected


def count_calls(source: s3.S3Source, operation: str) -> list:
    calls = []
    source.client.meta.events.register(f"before-call.s3.{operation}", lambda **kwargs: calls.append(operation))
    return calls


def scalar(engine, sql: str, **params):
    with engine.connect() as connection:
        return connection.execute(sa.text(sql), params).scalar()


def test_parse_uri():
    assert s3.parse_uri("s3://bucket/some/prefix/") == ("bucket", "some/prefix/")
    assert s3.parse_uri("s3://bucket") == ("bucket", "")
    with pytest.raises(sources.SourceError, match="no bucket"):
        s3.parse_uri("s3:///prefix")


def test_listing_is_paginated_and_skips_markers_hidden_and_other_prefixes(bucket):
    expected = fill(bucket, count=25)
    source = s3.S3Source(f"s3://{bucket[0]}/nightly/2026-11-27/", page_size=7)
    pages = count_calls(source, "ListObjectsV2")
    refs = list(source.list())
    assert {ref.uri for ref in refs} == set(expected)
    assert len(pages) == -(-(len(expected) + 2) // 7), "7 keys a page, the marker and hidden one included"
    assert all(ref.etag and ref.size is not None for ref in refs)


def test_bucket_tagged_once_then_nothing_downloaded(bucket, model, db_url):
    expected = fill(bucket)
    engine = db.ensure_schema(db.engine(db_url))
    uri = f"s3://{bucket[0]}/nightly/2026-11-27/"
    source = s3.S3Source(uri)
    gets = count_calls(source, "GetObject")
    first = tag.run(uri, model, HashtagEngine(), engine, tag.TagConfig(batch_size=5), source=source)
    assert (first.tagged, first.failed) == (len(expected) - 2, 2)
    assert len(gets) == len(expected)
    with engine.connect() as connection:
        tagged = dict(connection.execute(sa.text("SELECT image_uri, content_hash FROM image_results")).all())
        failed = dict(connection.execute(sa.text("SELECT image_uri, reason FROM failed_images")).all())
    assert set(tagged) | set(failed) == set(expected)
    assert all(value.startswith("etag:") for value in tagged.values()), "the ETag is the content identity"
    for key, expect in expected.items():
        assert key in tagged if expect == hostile.TAGGED else expect in failed[key]

    gets.clear()
    second = tag.run(uri, model, HashtagEngine(), engine, tag.TagConfig(batch_size=5), source=source)
    assert (second.tagged, second.failed, second.skipped) == (0, 0, len(expected))
    assert gets == [], "done objects are recognised by their ETag, never downloaded again"


def test_an_object_changed_or_deleted_after_listing_fails_and_is_tagged_next_run(bucket, model, sqlite_url):
    name, client = bucket
    for key in ("a.jpg", "b.jpg", "c.jpg"):
        client.put_object(Bucket=name, Key=key, Body=hostile.jpeg())
    source = s3.S3Source(f"s3://{name}/")
    refs = {ref.uri: ref for ref in source.list()}
    client.put_object(Bucket=name, Key="a.jpg", Body=hostile.jpeg(colour=(0, 200, 0)))
    client.delete_object(Bucket=name, Key="b.jpg")
    with pytest.raises(sources.UnreadableImage, match="changed after it was listed"):
        source.read(refs[f"s3://{name}/a.jpg"], 10**6)
    with pytest.raises(sources.UnreadableImage, match="deleted after it was listed"):
        source.read(refs[f"s3://{name}/b.jpg"], 10**6)
    assert source.read(refs[f"s3://{name}/c.jpg"], 10**6) == hostile.jpeg()
    with pytest.raises(sources.UnreadableImage, match="too large"):
        source.read(refs[f"s3://{name}/c.jpg"], 100)


def test_each_client_signs_with_the_credentials_of_its_time(bucket, monkeypatch):
    """Clients share botocore's parsed service descriptions (tasks/tag/s3.py _data_loader), not credentials:
    a key rotated in the environment of a long-lived worker is the one the next client signs with."""
    name, _ = bucket

    def signed_key(client) -> str:
        seen = []
        client.meta.events.register("before-send.s3", lambda request, **_: seen.append(
            request.headers["Authorization"].decode().split("Credential=")[1].split("/")[0]))
        client.list_objects_v2(Bucket=name)
        return seen[0]

    assert signed_key(s3.make_client()) == "testing"
    loader = s3._data_loader(botocore.session.get_session().get_config_variable("data_path"))
    searched = list(loader.search_paths)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "rotated")
    assert signed_key(s3.make_client()) == "rotated"
    assert signed_key(s3.make_client(settings=s3.S3Settings(access_key_id="given", secret_access_key="x"))) == "given"
    assert loader.search_paths == searched  # shared, and not longer for each client made


def test_source_gone_from_the_start_fails_the_run_clearly(aws_env, monkeypatch, model, sqlite_url):
    server = MotoS3()
    server.stop()  # a port nobody answers on
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
    engine = db.ensure_schema(db.engine(sqlite_url))
    with pytest.raises(tag.RunFailed, match="does not answer") as raised:
        tag.run("s3://photos/nightly/", model, HashtagEngine(), engine, tag.TagConfig())
    assert raised.value.summary.status == "failed"
    assert scalar(engine, "SELECT status FROM tagging_runs") == "failed"
    assert "AWS_ENDPOINT_URL" in scalar(engine, "SELECT error FROM tagging_runs")


def test_no_credentials_is_a_clear_error(aws_env, monkeypatch, moto):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(sources.SourceError, match="no AWS credentials"):
        list(s3.S3Source("s3://photos/").list())


def test_server_gone_mid_run_nothing_half_written_and_a_rerun_finishes(aws_env, monkeypatch, model, db_url):
    server = MotoS3()
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
    name = f"photos-{uuid.uuid4().hex[:10]}"
    boto3.client("s3").create_bucket(Bucket=name)
    expected = fill((name, boto3.client("s3")), count=30)
    engine = db.ensure_schema(db.engine(db_url))
    uri = f"s3://{name}/nightly/2026-11-27/"
    reads = []
    original = s3.S3Source.read

    def read_then_vanish(self, ref, max_bytes):
        reads.append(ref.uri)
        if len(reads) == 12:  # mid-run: two batches of 5 read, the third being read
            server.stop()
        return original(self, ref, max_bytes)

    monkeypatch.setattr(s3.S3Source, "read", read_then_vanish)
    with pytest.raises(tag.RunFailed, match="does not answer") as raised:
        tag.run(uri, model, HashtagEngine(), engine, tag.TagConfig(batch_size=5, workers=1))
    assert raised.value.summary.status == "failed"
    written = (scalar(engine, "SELECT COUNT(*) FROM image_results")
               + scalar(engine, "SELECT COUNT(*) FROM failed_images"))
    assert written % 5 == 0 and 0 < written < len(expected), "whole batches only"
    assert scalar(engine, "SELECT COUNT(*) FROM image_results r WHERE NOT EXISTS (SELECT 1 FROM image_hashtags h "
                          "WHERE h.image_uri = r.image_uri)") == 0
    assert scalar(engine, "SELECT status FROM tagging_runs") == "failed"

    monkeypatch.setattr(s3.S3Source, "read", original)
    back = MotoS3()  # the server is back (moto keeps its buckets in this process), on a new port
    monkeypatch.setenv("AWS_ENDPOINT_URL", back.endpoint)
    try:
        summary = tag.run(uri, model, HashtagEngine(), engine, tag.TagConfig(batch_size=5))
    finally:
        back.stop()
    assert summary.tagged + summary.failed == len(expected) - written
    assert scalar(engine, "SELECT COUNT(*) FROM image_results") + scalar(
        engine, "SELECT COUNT(*) FROM failed_images") == len(expected)


def test_cli_tags_a_bucket_twice_and_reports_a_dead_server(bucket, moto, results_db_url, bin_dir, tmp_path):
    db_url = results_db_url
    expected = fill(bucket)
    model_dir = tiny_model.build(tmp_path / "tiny")
    env = {**os.environ, "HASHTAGGER_DB_URL": db_url}
    command = [str(bin_dir / "hashtagger"), "tag", f"s3://{bucket[0]}/nightly/2026-11-27/", "--model", str(model_dir)]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 1, first.stderr  # the documented status when some images failed
    assert f"{len(expected) - 2} tagged" in first.stdout and "2 failed" in first.stdout
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0 and f"{len(expected)} already done" in second.stdout
    engine = db.engine(db_url)
    assert scalar(engine, "SELECT COUNT(*) FROM image_results") == len(expected) - 2

    moto.stop()
    gone = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert gone.returncode == 1  # the run stopped: rerun to finish
    assert "does not answer" in gone.stderr and "Traceback" not in gone.stderr
    assert len(gone.stderr.strip().splitlines()) == 1, gone.stderr
    assert scalar(engine, "SELECT COUNT(*) FROM tagging_runs WHERE status = 'failed'") == 1


def test_keys_with_control_characters_and_nul_are_tagged_and_a_rerun_reads_nothing(bucket, model, db_url):
    name, client = bucket
    keys = ["in/cat.jpg"] + [f"in/{key}" for key in hostile.HOSTILE_KEYS]
    for key in keys:
        client.put_object(Bucket=name, Key=key, Body=hostile.jpeg())
    engine = db.ensure_schema(db.engine(db_url))
    source = s3.S3Source(f"s3://{name}/in/")
    assert {ref.location or ref.uri for ref in source.list()} == {f"s3://{name}/{key}" for key in keys}
    first = tag.run(source.uri, model, HashtagEngine(), engine, tag.TagConfig(batch_size=3), source=source)
    assert (first.tagged, first.failed, first.status) == (len(keys), 0, "succeeded")
    with engine.connect() as connection:
        shown = {uri for (uri,) in connection.execute(sa.text("SELECT image_uri FROM image_labels"))}
    assert f"s3://{name}/in/nul\\x00.jpg" in shown and f"s3://{name}/in/ctl\x01.jpg" in shown
    assert f"s3://{name}/in/two\\x00nuls\\x00.jpg" in shown and f"s3://{name}/in/{'k' * 1000}.jpg" in shown
    gets = count_calls(source, "GetObject")
    again = tag.run(source.uri, model, HashtagEngine(), engine, tag.TagConfig(batch_size=3), source=source)
    assert (again.tagged, again.skipped, gets) == (0, len(keys), [])


def test_a_read_that_failed_once_is_retried_next_run_but_a_decode_failure_is_final(bucket, model, db_url,
                                                                                    monkeypatch):
    name, client = bucket
    for key in ("gone-then-back.jpg", "denied-once.jpg", "good.jpg"):
        client.put_object(Bucket=name, Key=key, Body=hostile.jpeg())
    client.put_object(Bucket=name, Key="broken.jpg", Body=b"not a picture")
    engine = db.ensure_schema(db.engine(db_url))
    source = s3.S3Source(f"s3://{name}/")
    original = s3.S3Source.read

    def gone_while_read(self, ref, max_bytes):  # deleted between the listing and the read
        if ref.uri.endswith("gone-then-back.jpg"):
            client.delete_object(Bucket=name, Key="gone-then-back.jpg")
        return original(self, ref, max_bytes)

    def denied(**kwargs):  # a passing 403 (a policy being rolled out), from the client itself
        if kwargs["params"]["Key"] == "denied-once.jpg":
            raise botocore.exceptions.ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"},
                                                   "ResponseMetadata": {"HTTPStatusCode": 403}}, "GetObject")

    monkeypatch.setattr(s3.S3Source, "read", gone_while_read)
    source.client.meta.events.register("before-parameter-build.s3.GetObject", denied, unique_id="deny")
    first = tag.run(source.uri, model, HashtagEngine(), engine, tag.TagConfig(), source=source)
    assert (first.tagged, first.failed) == (1, 3)
    with engine.connect() as connection:
        failed = dict(connection.execute(sa.text("SELECT image_uri, reason FROM failed_images")).all())
    assert "deleted after it was listed" in failed[f"s3://{name}/gone-then-back.jpg"]
    assert "access denied" in failed[f"s3://{name}/denied-once.jpg"]

    monkeypatch.setattr(s3.S3Source, "read", original)
    source.client.meta.events.unregister("before-parameter-build.s3.GetObject", unique_id="deny")
    client.put_object(Bucket=name, Key="gone-then-back.jpg", Body=hostile.jpeg())  # restored: the same ETag
    gets = count_calls(source, "GetObject")
    second = tag.run(source.uri, model, HashtagEngine(), engine, tag.TagConfig(), source=source)
    assert (second.tagged, second.failed, second.skipped) == (2, 0, 2)
    assert len(gets) == 2, "the two read failures are read again; the decode failure and the good one are not"
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT image_uri FROM failed_images")).all() == [
            (f"s3://{name}/broken.jpg",)]
    third = tag.run(source.uri, model, HashtagEngine(), engine, tag.TagConfig(), source=source)
    assert (third.tagged, third.failed, third.skipped) == (0, 0, 4)


# ---------------------------------------------------------------------------- faults on the wire (issue 21)

@pytest.fixture
def proxy(moto, monkeypatch):
    """A proxy in front of moto that the product's own client (make_client) goes through."""
    server = S3Proxy(moto.endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
    monkeypatch.setattr(s3, "READ_RETRY_SECONDS", 0.05)
    yield server
    server.stop()


def put(bucket, *keys: str) -> None:
    name, client = bucket
    for index, key in enumerate(keys):
        client.put_object(Bucket=name, Key=key, Body=hostile.noisy_jpeg(seed=index))


def test_a_body_cut_off_halfway_is_read_again_and_never_stored_as_a_decode_failure(bucket, proxy, model, db_url):
    name, _ = bucket
    put(bucket, "cut-once.jpg", "cut-always.jpg", "good.jpg")
    proxy.cut.update({"cut-once.jpg": 1, "cut-always.jpg": -1})
    engine = db.ensure_schema(db.engine(db_url))
    uri = f"s3://{name}/"
    first = tag.run(uri, model, HashtagEngine(), engine, tag.TagConfig(batch_size=2))
    assert (first.status, first.tagged, first.failed) == ("succeeded_with_failures", 2, 1)
    assert proxy.requests[("GET", "cut-once.jpg")] == 2, "the cut read was read again within the run"
    assert proxy.requests[("GET", "cut-always.jpg")] == s3.READ_ATTEMPTS
    with engine.connect() as connection:
        failures = connection.execute(sa.text("SELECT image_uri, content_hash, reason FROM image_failures")).all()
    assert [(uri_, content) for uri_, content, _ in failures] == [(f"s3://{name}/cut-always.jpg", "")], \
        "a read that broke off is no verdict on the content: stored under no ETag"
    assert "broke off after" in failures[0][2] and "next run reads it again" in failures[0][2]

    proxy.cut.clear()  # the network is back: the next run tags it, and reads nothing else
    second = tag.run(uri, model, HashtagEngine(), engine, tag.TagConfig(batch_size=2))
    assert (second.tagged, second.failed, second.skipped) == (1, 0, 2)
    assert scalar(engine, "SELECT COUNT(*) FROM failed_images") == 0
    assert proxy.requests[("GET", "good.jpg")] == 1


def test_a_listing_that_repeats_keys_tags_each_image_once(bucket, proxy, model, db_url):
    name, _ = bucket
    keys = [f"img{index}.jpg" for index in range(5)]
    put(bucket, *keys)
    proxy.repeat_listing = True  # every page of 2 keys lists its first key twice
    engine = db.ensure_schema(db.engine(db_url))
    uri = f"s3://{name}/"
    source = s3.S3Source(uri, page_size=2)
    assert len(list(source.list())) == 8, "the listing itself repeats 3 keys"
    # batches of 2: a key twice in one batch (img0, img0) and across two batches (img2 | img2)
    first = tag.run(uri, model, HashtagEngine(), engine, tag.TagConfig(batch_size=2), source=source)
    assert (first.status, first.seen, first.tagged, first.failed) == ("succeeded", 5, 5, 0)
    assert scalar(engine, "SELECT COUNT(*) FROM image_results") == 5
    assert scalar(engine, "SELECT seen FROM tagging_runs WHERE run_id = :run", run=first.run_id) == 5
    second = tag.run(uri, model, HashtagEngine(), engine, tag.TagConfig(batch_size=2), source=source)
    assert (second.seen, second.tagged, second.skipped) == (5, 0, 5)


def test_a_key_throttled_for_good_fails_alone_and_the_run_goes_on(bucket, proxy, model, db_url):
    name, _ = bucket
    keys = ["a.jpg", "b-hot.jpg", "c.jpg", "d.jpg"]
    put(bucket, *keys)
    proxy.throttled.add("b-hot.jpg")  # 503 SlowDown, every time
    engine = db.ensure_schema(db.engine(db_url))
    uri = f"s3://{name}/"
    first = tag.run(uri, model, HashtagEngine(), engine, tag.TagConfig(batch_size=2))
    assert (first.status, first.tagged, first.failed) == ("succeeded_with_failures", 3, 1)
    assert proxy.requests[("GET", "b-hot.jpg")] == s3.REQUEST_ATTEMPTS, "backed off (adaptive mode), then gave up"
    with engine.connect() as connection:
        [(content, reason)] = connection.execute(sa.text("SELECT content_hash, reason FROM image_failures")).all()
    assert content == "" and "SlowDown" in reason and "next run reads it again" in reason

    proxy.throttled.clear()
    second = tag.run(uri, model, HashtagEngine(), engine, tag.TagConfig(batch_size=2))
    assert (second.tagged, second.failed, second.skipped) == (1, 0, 3)


def test_nas_and_system_folders_synced_to_a_bucket_are_skipped_and_counted(bucket, model, sqlite_url):
    name, _ = bucket
    put(bucket, "photos/cat.jpg", "photos/@eaDir/cat.jpg/SYNOFILE_THUMB_XL.jpg", "photos/#recycle/old.jpg",
        "$RECYCLE.BIN/S-1-5/gone.jpg", "photos/Icon\r", "System Volume Information/x.jpg",
        "photos/notes.txt", "photos/cat.xmp", "photos/meta.JSON")  # sidecars, skipped as in a folder
    engine = db.ensure_schema(db.engine(sqlite_url))
    summary = tag.run(f"s3://{name}/", model, HashtagEngine(), engine, tag.TagConfig())
    assert (summary.seen, summary.tagged, summary.failed, summary.not_images) == (1, 1, 0, 8)


def test_cut_read_verdicts_stored_under_an_etag_before_015_are_read_again(db_url, monkeypatch):
    engine = db.engine(db_url)
    files = db.migration_files()
    monkeypatch.setattr(db, "migration_files", lambda: [(name, text) for name, text in files if name < "015"])
    db.migrate(engine)
    failures = [("s3://b/cut.jpg", "etag:abc", "truncated or corrupt image data (image file is truncated)"),
                ("s3://b/cut-header.png", "etag:def", "truncated or corrupt PNG file (its header cannot be read)"),
                ("s3://b/notes.jpg", "etag:123", "not an image: a text file"),
                ("/p/cut.jpg", "sha256:aa", "truncated or corrupt image data (image file is truncated)")]
    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO image_failures (image_uri, content_hash, reason, run_id, failed_at) "
                                   "VALUES (:uri, :hash, :reason, 'r1', :at)"),
                           [{"uri": uri, "hash": content, "reason": reason, "at": db.utcnow()}
                            for uri, content, reason in failures])
    monkeypatch.setattr(db, "migration_files", lambda: files)
    db.migrate(engine)
    with engine.connect() as connection:
        kept = {uri for (uri,) in connection.execute(sa.text("SELECT image_uri FROM image_failures"))}
    assert kept == {"s3://b/notes.jpg", "/p/cut.jpg"}, "a local file's verdict is on the bytes it read: kept"


def test_a_nightly_shard_reaches_bucket_and_model_through_its_settings_never_the_environment(
        bucket, moto, results_db_url, tmp_path, monkeypatch):
    """The nightly path (tasks/pipeline/tagging.py, as dags/nightly_tagging.py calls it) takes the store's
    settings as an argument: with the process environment pointing at a dead endpoint, the shard still
    lists, reads and tags the bucket, fetches its s3:// model, and the run page gets its thumbnails; the
    environment is the same afterwards."""
    from tasks import pipeline
    from tasks.registry import artifact_store

    expected = fill(bucket)
    name = bucket[0]
    artifact_store.upload_folder(tiny_model.build(tmp_path / "tiny"), f"s3://{name}/models/tiny/")
    settings = pipeline.S3Settings(endpoint_url=moto.endpoint, access_key_id="testing",
                                   secret_access_key="testing", region="us-east-1")
    dead = MotoS3()
    dead.stop()
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead.endpoint)  # what boto3 would use if we detoured through it
    before = dict(os.environ)
    run_id = pipeline.shard_run_id("nightly-settings", 0, 1)
    summary = pipeline.tag_shard(f"s3://{name}/nightly/2026-11-27/", f"s3://{name}/models/tiny/", 0, 1, run_id,
                                 db_url=results_db_url, s3=settings)
    assert (summary["tagged"], summary["failed"]) == (len(expected) - 2, 2), summary
    page = pipeline.write_run_report([run_id], "nightly-settings", db_url=results_db_url, s3=settings)
    assert "data:image/jpeg;base64," in page.read_text()
    assert dict(os.environ) == before
    with pytest.raises(sources.SourceError, match="does not answer"):  # and the environment's endpoint is dead
        list(s3.S3Source(f"s3://{name}/", client=s3.make_client()).list())
