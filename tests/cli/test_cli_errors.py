"""Every user mistake is one line on stderr with what to do next and the documented exit code; no traceback.

Runs the installed console scripts, as people do. Exit codes (tasks/errors.py, `--help`, README):
0 ok, 1 some images failed, 2 usage or configuration error, 3 auto-promote refused, 130 interrupted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from fixtures.signals import ctrl_c_as_at_a_terminal

from tasks import errors

REPO_SAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "samples")


def run(bin_dir, command: str, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(bin_dir / command), *map(str, args)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def assert_one_line(result: subprocess.CompletedProcess, code: int, *expected: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, (result.returncode, result.stderr)
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    for text in expected:
        assert text in lines[0], lines[0]


TRAIN_MISTAKES = [
    ([], "required: --arch"),
    (["--arch", "vgg61"], "invalid choice: 'vgg61'"),
    (["--arch", "vgg16", "--recipe", "fastest"], "invalid choice: 'fastest'"),
    (["--arch", "vgg16", "--dataset", "cifar1000"], "did you mean cifar100"),
    (["--arch", "vgg16", "--epochs", "0"], "--epochs"),
    (["--arch", "vgg16", "--train-limit", "0"], "--train-limit"),
    (["--arch", "vgg16", "--recipe-set", "batch_size"], "not KEY=VALUE"),
    (["--arch", "airbench", "--model-set", "widths=[64,256,256]", "--model-set", "widths=[128,512,512]"],
     "--model-set widths given twice"),
]


def test_verbose_is_accepted_after_any_command_too():
    from tasks.cli import main as cli

    parser = cli.build_parser()
    assert parser.parse_args(["train", "--arch", "shallow", "--verbose"]).verbose is True
    assert parser.parse_args(["models", "list", "-v"]).verbose is True
    assert parser.parse_args(["-v", "models", "list"]).verbose is True
    assert parser.parse_args(["models", "list"]).verbose is False


def test_train_arguments_are_checked_before_tensorflow_is_imported():
    """One process runs every bad `train` line in turn: none imports TensorFlow, each says what is wrong."""
    script = ("import json, sys, io, contextlib\n"
              "from tasks.cli import main\n"
              "out = []\n"
              f"for args, _ in {TRAIN_MISTAKES!r}:\n"
              "    err = io.StringIO()\n"
              "    with contextlib.redirect_stderr(err):\n"
              "        code = main.main(['train', *args])\n"
              "    out.append([code, err.getvalue()])\n"
              "print(json.dumps({'results': out, 'tensorflow': 'tensorflow' in sys.modules}))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["tensorflow"] is False
    for (args, expected), (code, stderr) in zip(TRAIN_MISTAKES, report["results"]):
        assert code == errors.EXIT_USAGE, (args, stderr)
        assert len(stderr.strip().splitlines()) == 1 and expected in stderr, (args, stderr)


BAD_DATABASES = [
    ("postgresql://postgres@127.0.0.1:1/hashtagger", "cannot use the results database"),  # server down
    ("postgresql://no_such_role_ux@127.0.0.1:5432/postgres", "no_such_role_ux"),  # wrong user
    ("postgresql://postgres@127.0.0.1:5432/no_such_database_ux", "no_such_database_ux"),
    ("not a url", "is not a database URL"),
    ("postgresql+nodriver://postgres@127.0.0.1/x", "no such database dialect or driver"),
    ("mysql://root@127.0.0.1/x", "is not installed"),  # a dialect whose driver hashtagger does not install
]
DATABASE_COMMANDS = [("db", "migrate"), ("models", "list"), ("models", "promote", "m1"),
                     ("hashtags", "show", "cat"), ("hashtags", "block", "#spam"), ("tag", REPO_SAMPLES)]


@pytest.mark.parametrize("url, expected", BAD_DATABASES)
def test_a_bad_database_url_is_one_line(bin_dir, url, expected):
    for command in DATABASE_COMMANDS:
        result = run(bin_dir, "hashtagger", *command, env={"HASHTAGGER_DB_URL": url})
        assert_one_line(result, errors.EXIT_USAGE, expected)


def test_a_psql_style_url_uses_the_installed_driver(bin_dir, pg_url):
    """The README's psql form, postgresql://, works as HASHTAGGER_DB_URL (psycopg2 comes with the package)."""
    psql_form = "postgresql://" + pg_url.split("://", 1)[1]
    migrated = run(bin_dir, "hashtagger", "db", "migrate", env={"HASHTAGGER_DB_URL": psql_form})
    assert migrated.returncode == 0 and "applied 001_results" in migrated.stdout, migrated.stderr


def test_usage_mistakes(bin_dir, tmp_path):
    assert_one_line(run(bin_dir, "hashtagger"), errors.EXIT_USAGE, "required")
    assert_one_line(run(bin_dir, "hashtagger", "tag", tmp_path / "nowhere"), errors.EXIT_USAGE, "no such file")
    # no AWS credentials at all: a configuration error to fix, not a run to repeat (and no instance metadata
    # service asked: nothing outside this machine)
    no_aws = {**{key: value for key, value in os.environ.items() if not key.startswith("AWS_")},
              "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": str(tmp_path / "none"),
              "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    result = subprocess.run([str(bin_dir / "hashtagger"), "tag", "s3://no-such-bucket/prefix/"],
                            capture_output=True, text=True, timeout=120, env=no_aws)
    assert_one_line(result, errors.EXIT_USAGE, "no AWS credentials")
    assert "run the same command again" not in result.stderr
    # `hashtagger tag "$DIR"` with DIR unset: a usage error, not a run over the current folder
    assert_one_line(run(bin_dir, "hashtagger", "tag", ""), errors.EXIT_USAGE, "SOURCE is empty")
    assert_one_line(run(bin_dir, "hashtagger", "tag", " "), errors.EXIT_USAGE, "SOURCE is empty")
    assert_one_line(run(bin_dir, "hashtag", REPO_SAMPLES), errors.EXIT_USAGE, "hashtagger tag")
    assert_one_line(run(bin_dir, "hashtag", "--labels", "0", "x.jpg"), errors.EXIT_USAGE, "--labels")
    assert_one_line(run(bin_dir, "hashtagger", "hashtags", "show", "kat"), errors.EXIT_USAGE, "did you mean cat")
    assert_one_line(run(bin_dir, "hashtagger", "report", "no-such-run"), errors.EXIT_USAGE, "no tagging run")
    assert_one_line(run(bin_dir, "hashtagger", "models", "promote", "nope", "--no-onnx"), errors.EXIT_USAGE,
                    "not registered")


def test_an_unknown_run_names_the_database_it_was_looked_for_in(bin_dir, results_db_url):
    """`hashtagger report NOPE`: one line naming the database searched (an SQLite file's path, else the URL)."""
    import sqlalchemy as sa

    from tasks.tag import report

    url = sa.engine.make_url(results_db_url)
    where = url.database if url.get_backend_name() == "sqlite" else url.render_as_string(hide_password=True)
    result = run(bin_dir, "hashtagger", "report", "NOPE", env={"HASHTAGGER_DB_URL": results_db_url})
    assert_one_line(result, errors.EXIT_USAGE, "no tagging run NOPE", f"in the results database {where};",
                    "`hashtagger tag` prints its run id")
    # a URL's password is never shown
    with_password = sa.create_engine("postgresql+psycopg2://tagger:s3cret-pw@db.example:5432/results")
    assert report.database_shown(with_password) == "postgresql+psycopg2://tagger:***@db.example:5432/results"


def test_version_and_help_show_exit_codes_defaults_and_choices(bin_dir):
    for command in ("hashtagger", "hashtag"):
        version = run(bin_dir, command, "--version")
        assert version.returncode == 0 and version.stdout.startswith(f"{command} 0.")
        shown = " ".join(run(bin_dir, command, "--help").stdout.split())  # as wrapped to the terminal
        assert "130 interrupted" in shown and "3 auto-promote refused the model" in shown
    train_help = run(bin_dir, "hashtagger", "train", "--help").stdout
    assert "{shallow,allconv,resnet,vgg16,resnet9,airbench}" in train_help and "(default: fast)" in train_help
    tag_help = run(bin_dir, "hashtagger", "tag", "--help").stdout
    assert "(default: 256)" in tag_help and "(default: generic)" in tag_help


def test_a_closed_pipe_and_ctrl_c_end_quietly(bin_dir, tmp_path):
    piped = subprocess.run(f"'{bin_dir / 'hashtag'}' --json '{REPO_SAMPLES}/cat.jpg' | head -c 10", shell=True,
                           capture_output=True, text=True, timeout=120)
    assert piped.stdout == '{\n "model"'[:10] and piped.stderr == "", piped.stderr

    # Ctrl-C while `hashtag` waits to read an image (a FIFO nobody writes to)
    fifo = tmp_path / "slow.jpg"
    os.mkfifo(fifo)
    process = subprocess.Popen([str(bin_dir / "hashtag"), str(fifo)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_as_at_a_terminal)
    # wait until `hashtag` has opened the FIFO (a writer can then open it without blocking): the model is
    # loaded and the read waits for bytes that never come. A fixed sleep was too short on a loaded machine.
    writer, deadline = None, time.monotonic() + 120
    while writer is None and time.monotonic() < deadline and process.poll() is None:
        try:
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: nobody reads it yet
            time.sleep(0.1)
    assert writer is not None, "hashtag never opened the image"
    try:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        os.close(writer)
    assert process.returncode == errors.EXIT_INTERRUPTED, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1 and "interrupted" in stderr


def test_tag_says_when_a_folder_has_no_images(bin_dir, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "notes.txt").write_text("shopping list")
    env = {"HASHTAGGER_DB_URL": f"sqlite:///{tmp_path / 'results.db'}"}
    # a configured database is migrated once, by `db migrate` (issue 10); only the embedded default migrates itself
    assert run(bin_dir, "hashtagger", "db", "migrate", env=env).returncode == 0
    result = run(bin_dir, "hashtagger", "tag", folder, env=env)
    assert result.returncode == 0, result.stderr
    assert "no images found" in result.stdout and "1 non-image file skipped)" in result.stdout
    assert "images/s" not in result.stdout
    as_json = json.loads(run(bin_dir, "hashtagger", "tag", REPO_SAMPLES, "--json", env=env).stdout)
    assert as_json["tagged"] == 8 and as_json["failed"] == 0 and as_json["runtime"] == "onnx"


def test_tag_refuses_a_limit_below_one_before_listing(tmp_path, capsys, monkeypatch):
    """--limit 0 listed the folder, tagged nothing and said 'no images found' (a fresh user's report)."""
    from tasks.cli import main

    (tmp_path / "a.jpg").write_bytes(b"never read")
    monkeypatch.setenv("HASHTAGGER_DB_URL", f"sqlite:///{tmp_path / 'results.db'}")
    code = main.main(["tag", str(tmp_path), "--limit", "0"])
    stderr = capsys.readouterr().err
    assert code == errors.EXIT_USAGE and len(stderr.strip().splitlines()) == 1, stderr
    assert "--limit 0: must be at least 1" in stderr and "--workers" not in stderr, stderr  # only what was given
    assert not (tmp_path / "results.db").exists(), "refused before touching the database"


SETTINGS_MISTAKES = [
    (["--model-set", "residual=maybe"], "residual='maybe': expected true or false"),
    (["--model-set", "widths=[16,32]"], "expected 3 items"),
    (["--model-set", "resdual=true"], "no config field 'resdual' (did you mean residual?)"),
    (["--recipe-set", "learning_rat=1"], "recipe has no field learning_rat (did you mean learning_rate?)"),
    (["--recipe-set", 'augment=["alternating_flip","cutuot12"]'], "unknown host augmentation cutuot12"),
    (["--recipe-set", 'augment=["alternating_flip","cutout40"]'], "within the images' 32 pixels"),
    (["--recipe-set", 'augment=["alternating_flip","translate40"]'], "a shift must stay below"),
    (["--recipe-set", 'augment=["translate40"]'], "or, on the host, alternating_flip"),
    (["--recipe-set", "batch_size=abc"], "recipe field batch_size='abc': expected int"),
    (["--recipe-set", "batch_size=0"], "recipe field batch_size=0: expected a value at least 1"),
    (["--recipe-set", "label_smoothing=1.5"], "label_smoothing=1.5: expected a value from 0 up to"),
    (["--recipe-set", "learning_rate=NaN"], "learning_rate=nan: expected finite numbers"),
    (["--recipe-set", "step_rates=[[NaN,1]]"], "expected finite numbers"),
    (["--recipe-set", "step_rates=[1,2]"], "expected a list of [when, rate] pairs"),
    (["--recipe-set", "optimizer=adamw"], "optimizer='adamw': expected one of 'sgd', 'adam', 'rmsprop', 'airbench_sgd'"),
    (["--recipe-set", "tta=mirror"], "tta='mirror': expected one of 'none', 'flip', 'flip_translate'"),
    (["--recipe-set", "outlier_dataset=cifar10"], "outlier_dataset=cifar10 is the dataset being trained"),
    (["--model-set", "batch_norm_momentum=1.5"], "batch_norm_momentum=1.5: expected a value from 0 up to"),
    (["--model-set", "whiten_epsilon=-1"], "whiten_epsilon=-1: expected a value above 0"),
    (["--model-set", "logit_scale=-1"], "logit_scale=-1: expected a value above 0"),
    (["--model-set", "widths=[0,384,384]"], "expected every item at least 1"),
]


@pytest.mark.parametrize("args, expected", SETTINGS_MISTAKES)
def test_train_settings_that_cannot_train_are_refused_in_one_line_before_training(
        tiny_cifar, hashtagger_home, args, expected, capsys):
    from tasks.cli import main as cli

    code = cli.main(["train", "--arch", "airbench", "--recipe", "airbench96", "--quiet", *args])
    err = capsys.readouterr().err
    assert code == errors.EXIT_USAGE, err
    assert len(err.strip().splitlines()) == 1 and expected in err and "unexpected" not in err, err
    assert not (hashtagger_home / "models").exists()  # nothing trained, nothing saved
