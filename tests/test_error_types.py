"""Retries and exit statuses follow an error's type, never its words (tasks/errors.py, tasks/tag/refs.py).

Each source and S3 failure is produced for real (a missing folder, malformed URIs, moto's S3 server on
127.0.0.1 with a missing bucket, no credentials, a port nobody answers on, a refusal of the
credentials), classified, then produced again with every SourceError message reworded: the orchestrator's
retry decision (is_permanent), the configuration verdict and the CLI's exit status must not move.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tasks import errors
from tasks.cli import main as cli
from tasks.tag import refs, s3, sources
from test_s3 import MotoS3, aws_env, moto  # noqa: F401  the fixtures (moto's server, isolated AWS env)

REWORDED = "reworded: nothing here names a cause"


@pytest.fixture
def reworded(monkeypatch):
    """Every SourceError (and subclass) says the same meaningless words from now on."""
    def reword():
        original = refs.SourceError.__init__
        monkeypatch.setattr(refs.SourceError, "__init__", lambda self, *_: original(self, REWORDED))
    return reword


def _raised(produce) -> refs.SourceError:
    with pytest.raises(refs.SourceError) as raised:
        produce()
    return raised.value


def _decisions(error: refs.SourceError) -> tuple[str, bool, bool]:
    return type(error).__name__, errors.is_permanent(error), errors.needs_configuration(error)


def _access_denied():
    import botocore.exceptions

    denied = botocore.exceptions.ClientError(
        {"Error": {"Code": "AccessDenied", "Message": "Access Denied"}, "ResponseMetadata": {"HTTPStatusCode": 403}},
        "ListObjectsV2")
    raise s3._source_error("cannot list s3://photos/", denied)


LOCAL_CASES = {  # name: (how to produce it, (type, permanent, needs configuration))
    "missing folder": (lambda: sources.open_source("/no/such/folder/anywhere"), ("SourceNotFound", True, True)),
    "empty source": (lambda: sources.open_source(""), ("SourceNotFound", True, True)),
    "not an s3 URI": (lambda: s3.parse_uri("gs://bucket/x"), ("SourceNotFound", True, True)),
    "no bucket name": (lambda: s3.parse_uri("s3:///prefix"), ("SourceNotFound", True, True)),
    "access denied": (_access_denied, ("SourceAccessDenied", True, True)),
}


@pytest.mark.parametrize("case", sorted(LOCAL_CASES))
def test_local_and_uri_errors_decide_by_type(case, reworded):
    produce, expected = LOCAL_CASES[case]
    assert _decisions(_raised(produce)) == expected
    reworded()
    error = _raised(produce)
    assert str(error) == REWORDED and _decisions(error) == expected


def test_s3_errors_decide_by_type_whatever_their_words(aws_env, moto, monkeypatch, reworded):  # noqa: F811
    def missing_bucket():
        list(s3.S3Source("s3://no-such-bucket-here/nightly/").list())

    def no_credentials():
        with monkeypatch.context() as env:
            env.delenv("AWS_ACCESS_KEY_ID")
            env.delenv("AWS_SECRET_ACCESS_KEY")
            list(s3.S3Source("s3://photos/").list())

    gone = MotoS3()
    gone.stop()  # a port nobody answers on: transient, retried by an orchestrator, exit 1 "run it again"

    def server_gone():
        list(s3.S3Source("s3://photos/", client=_client(gone.endpoint)).list())

    cases = {"missing bucket": (missing_bucket, ("SourceNotFound", True, True)),
             "no credentials": (no_credentials, ("SourceNotConfigured", False, True)),
             "server gone": (server_gone, ("SourceError", False, False))}
    for name, (produce, expected) in cases.items():
        assert _decisions(_raised(produce)) == expected, name
    reworded()
    for name, (produce, expected) in cases.items():
        error = _raised(produce)
        assert str(error) == REWORDED and _decisions(error) == expected, name


def _client(endpoint: str):
    import boto3
    import botocore.config

    # one attempt: the classification is the point here, not the backoff (tasks/tag/s3.py's is tested in test_s3.py)
    return boto3.client("s3", endpoint_url=endpoint,
                        config=botocore.config.Config(retries={"total_max_attempts": 1}, connect_timeout=2))


def test_cli_exit_statuses_hold_when_the_words_change(aws_env, moto, monkeypatch, tmp_path, capsys,  # noqa: F811
                                                      reworded):
    """`hashtagger tag` in this process: a missing bucket is a configuration error (2), a missing folder a
    usage error (2), before and after the rewording."""
    monkeypatch.setenv("HASHTAGGER_DB_URL", f"sqlite:///{tmp_path / 'results.db'}")
    assert cli.main(["db", "migrate"]) == 0
    commands = {"missing bucket": ["tag", "s3://no-such-bucket-here/nightly/", "--quiet"],
                "missing folder": ["tag", str(tmp_path / "nowhere"), "--quiet"]}
    before = {name: cli.main(argv) for name, argv in commands.items()}
    assert before == {"missing bucket": errors.EXIT_USAGE, "missing folder": errors.EXIT_USAGE}
    reworded()
    capsys.readouterr()
    after = {name: cli.main(argv) for name, argv in commands.items()}
    assert after == before
    assert capsys.readouterr().err.count(REWORDED) == len(commands)  # the new words are what people see
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'results.db'}")
    with engine.connect() as connection:  # the bucket's runs were recorded as failed, each time
        assert connection.execute(sa.text("SELECT COUNT(*) FROM tagging_runs WHERE status = 'failed'")).scalar() == 2
