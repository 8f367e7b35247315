"""`s3://bucket/prefix` as an image source, through boto3, on AWS or any S3-compatible server.

The endpoint and credentials come from the standard AWS settings (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ...). Listing is paginated and lazy; reads stream into memory with
a size cap. The ETag is the content's identity, so an object already tagged is skipped without being
downloaded, and a read asks for exactly the listed version (If-Match).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import time
from typing import Iterator

from tasks.config import S3Settings
from tasks.tag.refs import (NOT_IMAGE_SUFFIXES, SYSTEM_FILES, ImageRef, SourceAccessDenied, SourceError,
                            SourceNotConfigured, SourceNotFound, UnreadableImage, is_system_folder, too_big)

# Client errors that concern one object, not the bucket or the server: that image fails, the run goes on.
PER_OBJECT_ERRORS = {
    "NoSuchKey": "the object was deleted after it was listed",
    "404": "the object was deleted after it was listed",
    "PreconditionFailed": "the object changed after it was listed; the next run tags the new version",
    "412": "the object changed after it was listed; the next run tags the new version",
    "AccessDenied": "access denied to this object",
    "403": "access denied to this object",
    "InvalidObjectState": "the object is archived (restore it from Glacier first)",
}
# Answers that say "not now" about one object: the client backs off and retries them (adaptive mode),
# and an object still refused after that fails alone, for this run only (no content verdict is stored,
# so the next run reads it again). One hot or throttled key never ends the night.
BUSY_ERRORS = {"SlowDown", "503", "ServiceUnavailable", "Throttling", "ThrottlingException", "TooManyRequests",
               "429", "RequestLimitExceeded", "RequestTimeout", "InternalError", "500"}
REQUEST_ATTEMPTS = 6  # tries of one request, the first included: about 15 s of jittered backoff (1, 2, 4, 8 s)
READ_ATTEMPTS = 3  # whole GETs of one object whose body came short or broke off, before it fails for this run
READ_RETRY_SECONDS = 0.5  # the pause before the second GET; doubled before each later one


def parse_uri(uri: str) -> tuple[str, str]:
    """'s3://bucket/some/prefix' -> ('bucket', 'some/prefix'); the prefix is an S3 key prefix, as is."""
    if not uri.startswith("s3://"):
        raise SourceNotFound(f"{uri}: not an s3://bucket/prefix URI")
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    if not bucket:
        raise SourceNotFound(f"{uri}: no bucket name; use s3://bucket/prefix")
    return bucket, prefix


def make_client(max_connections: int = 10, settings: S3Settings | None = None):
    """An S3 client with bounded retries and timeouts, reaching the store `settings` names (its fields
    left None, and all of it when `settings` is None, come from boto3's standard AWS environment)."""
    import boto3
    import botocore.config
    import botocore.session

    config = botocore.config.Config(
        # adaptive: exponential backoff with jitter, and a client-side rate limit that slows every
        # thread down while the store throttles (503 SlowDown); a listing still refused after the
        # attempts stops the run (a dead server is not retried all night), one object fails alone
        retries={"total_max_attempts": REQUEST_ATTEMPTS, "mode": "adaptive"},
        connect_timeout=5,  # seconds
        read_timeout=60,  # seconds; a 50 MB photo on a slow link still fits
        max_pool_connections=max_connections,  # one per reading thread, and some
    )
    try:
        settings = settings or S3Settings()
        core = botocore.session.get_session()  # its own credentials, resolved now (a rotated key is seen)
        loader = _data_loader(core.get_config_variable("data_path"))
        core.register_component("data_loader", loader)
        with _LOADER_LOCK:
            session = boto3.session.Session(botocore_session=core, **settings.session_kwargs())
            # each boto3 Session appends its data folder to the loader's search path: once is enough
            loader.search_paths[:] = dict.fromkeys(loader.search_paths)
        return session.client("s3", endpoint_url=settings.endpoint_url, config=config)
    except Exception as error:  # boto3 raises ValueError, BotoCoreError, ... for a bad endpoint or profile
        raise SourceError(f"cannot set up the S3 client: {error}") from error


_LOADER_LOCK = threading.Lock()


@functools.cache
def _data_loader(data_path: str | None):
    """botocore's reader of its service descriptions (S3's API and endpoints, JSON parsed on first use),
    one per process: each new session would parse them again (measured here: 70-300 ms to make a client
    with its own loader, 17 ms sharing one), and a night makes a client in each of its tasks."""
    import botocore.loaders

    return botocore.loaders.create_loader(data_path)


class S3Source:
    """Objects under an S3 key prefix; keys ending in '/' (folder markers) and hidden names are skipped,
    and so are NAS and system folders (@eaDir, #recycle: refs.SYSTEM_FOLDERS), counted in `not_images`."""

    def __init__(self, uri: str, client=None, page_size: int = 1000, max_connections: int = 10,
                 settings: S3Settings | None = None):
        self.bucket, self.prefix = parse_uri(uri)
        self.uri = f"s3://{self.bucket}/{self.prefix}"
        self.page_size = page_size  # keys per listing request (S3's maximum is 1,000)
        self.client = client if client is not None else make_client(max_connections, settings)
        self.not_images = 0  # keys the last list() skipped in system folders or as system files

    def list(self) -> Iterator[ImageRef]:
        import botocore.exceptions

        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=self.prefix,
                                   PaginationConfig={"PageSize": self.page_size})
        self.not_images = 0
        try:
            for page in pages:
                for entry in page.get("Contents", ()):
                    key = entry["Key"]
                    parts = key[len(self.prefix):].split("/")
                    if key.endswith("/") or any(part.startswith(".") for part in parts):
                        continue
                    if parts[-1] in SYSTEM_FILES or any(is_system_folder(part) for part in parts[:-1]) \
                            or os.path.splitext(parts[-1])[1].lower() in NOT_IMAGE_SUFFIXES:  # sidecars
                        self.not_images += 1
                        continue
                    etag = (entry.get("ETag") or "").strip('"') or None
                    # a key may hold control characters or NUL: ImageRef.of keys such a URI by its hash
                    ref = ImageRef.of(f"s3://{self.bucket}/{key}", entry.get("Size"), etag)
                    modified = entry.get("LastModified")
                    yield dataclasses.replace(ref, modified=modified.isoformat()) if modified else ref
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
            raise _source_error(f"cannot list {self.uri}", error) from error

    def read(self, ref: ImageRef, max_bytes: int) -> bytes:
        """The object's bytes as listed (If-Match its ETag); a body that comes short or breaks off is
        read again, then fails for this run only (UnreadableImage), never as bytes to decode."""
        attempt = 1
        while True:
            try:
                return self._read_once(ref, max_bytes)
            except _BrokenBody as broken:
                if attempt == READ_ATTEMPTS:
                    raise UnreadableImage(f"cannot read: {broken} ({READ_ATTEMPTS} tries); the next run reads "
                                          "it again") from None
            time.sleep(READ_RETRY_SECONDS * 2 ** (attempt - 1))
            attempt += 1

    def _read_once(self, ref: ImageRef, max_bytes: int) -> bytes:
        import botocore.exceptions

        key = (ref.location or ref.uri)[len(f"s3://{self.bucket}/"):]
        request = {"Bucket": self.bucket, "Key": key}
        if ref.etag:
            request["IfMatch"] = f'"{ref.etag}"'
        try:
            response = self.client.get_object(**request)
        except botocore.exceptions.ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in PER_OBJECT_ERRORS:
                raise UnreadableImage(f"cannot read: {PER_OBJECT_ERRORS[code]}") from None
            if code in BUSY_ERRORS:
                raise UnreadableImage(f"cannot read: the store kept refusing this object ({_describe(error)}) "
                                      "after backing off; the next run reads it again") from None
            raise _source_error(f"cannot read {ref.uri}", error) from error
        except botocore.exceptions.BotoCoreError as error:
            raise _source_error(f"cannot read {ref.uri}", error) from error
        return _body(response, max_bytes)


class _BrokenBody(Exception):
    """An object's body came short of its Content-Length or broke off: a transient read error."""


def _body(response: dict, max_bytes: int) -> bytes:
    """The body of a GetObject answer, whole: botocore's StreamingBody.read(amount) does not check
    Content-Length (boto3 #4111), so a connection cut halfway would pass as a short, "corrupt" image."""
    import botocore.exceptions

    body = response["Body"]
    length = response.get("ContentLength")
    try:
        if length is not None and length > max_bytes:
            raise UnreadableImage(too_big(length, max_bytes))
        try:
            data = body.read(max_bytes + 1)
        except (botocore.exceptions.BotoCoreError, OSError) as error:  # ResponseStreamingError, ReadTimeoutError
            raise _BrokenBody(f"the connection broke off while reading ({error})") from None
    finally:
        body.close()
    if len(data) > max_bytes:
        raise UnreadableImage(too_big(None, max_bytes))
    if length is not None and len(data) != length:
        raise _BrokenBody(f"the body broke off after {len(data):,} of {length:,} bytes")
    return data


# ClientError codes that no retry changes: the bucket is not there, or the store refuses the credentials
NOT_FOUND_ERRORS = {"NoSuchBucket"}
DENIED_ERRORS = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}


def _source_error(what: str, error: Exception) -> SourceError:
    """The SourceError whose type says what to do about a botocore `error` (its words say what it was)."""
    import botocore.exceptions

    code = error.response.get("Error", {}).get("Code", "") if isinstance(error, botocore.exceptions.ClientError) \
        else ""
    kind = (SourceNotFound if code in NOT_FOUND_ERRORS else SourceAccessDenied if code in DENIED_ERRORS
            else SourceNotConfigured if isinstance(error, botocore.exceptions.NoCredentialsError) else SourceError)
    return kind(f"{what}: {_describe(error)}")


def _describe(error: Exception) -> str:
    import botocore.exceptions

    if isinstance(error, botocore.exceptions.NoCredentialsError):
        return "no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
    if isinstance(error, (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError)):
        return f"the S3 server does not answer ({error}); check AWS_ENDPOINT_URL and the network"
    if isinstance(error, botocore.exceptions.ClientError):
        details = error.response.get("Error", {})
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{details.get('Code', 'error')} (HTTP {status}): {details.get('Message', '')}".rstrip(": ")
    return str(error)
