"""What a night costs when nothing (or 1%) is new: first run, no-op run and 1%-new run (issue 24).

    .venv/bin/python benchmarks/noop_night.py                          # the issue's sizes: 100,000 tiles, 2,000 photos
    .venv/bin/python benchmarks/noop_night.py --tiles 10000 --photos 2000   # what fits 2 shared cores in ~15 min
    .venv/bin/python benchmarks/noop_night.py --trials 1                   # each later night once (faster, noisier)

For CIFAR tiles (the 32x32 JPEGs of ../shared/data/cifar10-jpeg.tar.gz, copied under more names past
the 60,000 distinct ones) and photos of 3 MP (CIFAR images upscaled bicubic with Gaussian noise, JPEG
quality 90; 20 distinct, copied under more names), in a local folder and in a bucket (a moto server in
its own process), through two paths, each on a fresh PostgreSQL database:

- CLI: `hashtagger tag SOURCE --quiet --json` in a child process (tasks.cli.main.main, with the counters
  below installed); its start-up is measured by the same command on an empty folder just before;
- DAG: the nightly DAG's functions in this process, as the DAG wires them: pipeline.plan_night (the
  first task), then pipeline.tag_shard for each of 4 shards reading the manifest.

The first night runs once; the no-op and the 1%-new nights `--trials` times each (5 by default), the
1%-new one with another 1% added before each, and the table gives the median of their seconds and the
range: on two shared cores the same night's runs differ by up to 0.2-0.3 s (the interpreter's start-up
alone took 0.75 to 1.3 s), the size of the 1% night's whole budget for 2,000 photos.

Before each measured run the page cache is dropped (`sync; echo 3 > /proc/sys/vm/drop_caches`, as
root) and the program's own files are warmed by a run on an empty folder. Counted per run: listings of
the source (calls of LocalSource.list / S3Source.list) and ListObjectsV2 pages; image bytes read (the
lengths Source.read returned: the product's reads, counted by wrapping them); and for local runs
/proc/self/io read_bytes (what the process made the disk read, Python and the model included).
Writes reports/noop_night.md and prints it.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import io
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing
SHARED_DATA = REPO.parent / "shared" / "data"
PG_ADMIN_URL = os.environ.get("HASHTAGGER_BENCH_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
COUNTS = {"listings": 0, "pages": 0, "image_bytes": 0, "images_read": 0}


@dataclasses.dataclass(frozen=True)
class NightConfig:
    tiles: int = 100_000  # CIFAR JPEG tiles in the first night's folder
    photos: int = 2_000  # photos of `megapixels` in theirs
    megapixels: float = 3.0
    distinct_photos: int = 20  # photos generated (about 0.2 s each); the rest are copies under other names
    new_share: float = 0.01  # the share of new images on the third night
    trials: int = 5  # runs of the no-op and of the 1%-new night (each 1%-new run adds another 1%)
    shards: int = 4  # the DAG path's shards
    noise_sigma: float = 3.0  # grey levels of noise on the upscaled photos: sensor-like, not smooth
    backends: tuple[str, ...] = ("local", "s3")
    paths: tuple[str, ...] = ("cli", "dag")


@dataclasses.dataclass
class Measured:
    night: str  # first | no-op | 1% new
    seconds: float  # the median of its runs
    listings: int
    pages: int
    image_bytes: int
    images_read: int
    io_read_bytes: int | None
    tagged: int
    startup: float = 0.0  # the same command on an empty folder (CLI); 0 for the in-process DAG path
    runs: tuple[float, ...] = ()  # each run's seconds

    @classmethod
    def median_of(cls, trials: list[Measured]) -> Measured:
        """Several runs of one night: the medians of their seconds and start-ups; of the counts, the
        largest (a no-op that read an image in any run shows it)."""
        most = {field: max(getattr(trial, field) or 0 for trial in trials) for field in
                ("listings", "pages", "image_bytes", "images_read", "tagged")}
        io_bytes = None if trials[0].io_read_bytes is None else max(trial.io_read_bytes for trial in trials)
        return cls(trials[0].night, float(np.median([trial.seconds for trial in trials])), io_read_bytes=io_bytes,
                   startup=float(np.median([trial.startup for trial in trials])),
                   runs=tuple(trial.seconds for trial in trials), **most)


# ----------------------------------------------------------------------------------------------- counters


def install_counters() -> None:
    """Count listings, ListObjectsV2 pages and image bytes read into COUNTS (in this process)."""
    from tasks.tag import s3, sources

    for cls in (sources.LocalSource, s3.S3Source):
        def listing(self, original=cls.list):
            COUNTS["listings"] += 1
            return original(self)

        def read(self, ref, max_bytes, original=cls.read):
            data = original(self, ref, max_bytes)
            COUNTS["image_bytes"] += len(data)
            COUNTS["images_read"] += 1
            return data

        cls.list, cls.read = listing, read
    make_client = s3.make_client

    def counting_client(*args, **kwargs):
        client = make_client(*args, **kwargs)
        client.meta.events.register("before-call.s3.ListObjectsV2",
                                    lambda **_: COUNTS.update(pages=COUNTS["pages"] + 1))
        return client

    s3.make_client = counting_client


def io_read_bytes() -> int:
    """Bytes this process made the storage layer read (/proc/self/io read_bytes)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("read_bytes:"):
            return int(line.split()[1])
    return 0


def child(out: str, argv: list[str]) -> int:
    """The CLI in this process with the counters; its counts and read_bytes go to `out` as JSON."""
    install_counters()
    from tasks.cli import main

    before = io_read_bytes()
    status = main.main(argv)
    Path(out).write_text(json.dumps({**COUNTS, "io_read_bytes": io_read_bytes() - before, "status": status}))
    return 0


def drop_caches() -> None:
    subprocess.run("sync; echo 3 > /proc/sys/vm/drop_caches", shell=True, check=True)


# ------------------------------------------------------------------------------------------------- inputs


def cifar_jpegs() -> list[bytes]:
    """Every JPEG of the CIFAR-10 archive (test and train splits): 60,000 distinct tiles."""
    tiles = []
    with tarfile.open(SHARED_DATA / "cifar10-jpeg.tar.gz") as archive:
        for member in archive:
            if member.isfile() and member.name.endswith(".jpg"):
                tiles.append(archive.extractfile(member).read())
    return tiles


def photo(tile: bytes, megapixels: float, rng: np.random.Generator, sigma: float) -> bytes:
    width = int(round((megapixels * 1e6 * 4 / 3) ** 0.5))
    with Image.open(io.BytesIO(tile)) as small:
        big = small.convert("RGB").resize((width, int(round(width * 3 / 4))), Image.Resampling.BICUBIC)
    pixels = np.asarray(big, dtype=np.float32) + rng.normal(0.0, sigma, (big.height, big.width, 3)).astype(np.float32)
    buffer = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def corpus(kind: str, config: NightConfig, tiles: list[bytes]) -> tuple[list[bytes], list[list[bytes]]]:
    """(the first night's files, the 1% added before each 1%-new run) of one kind, as bytes."""
    if kind == "tiles":
        count = config.tiles
        extra = max(1, round(count * config.new_share))
        return [tiles[index % len(tiles)] for index in range(count)], \
            [[tiles[(count + trial * extra + index) % len(tiles)] for index in range(extra)]
             for trial in range(config.trials)]
    rng = np.random.default_rng(0)
    distinct = [photo(tiles[index], config.megapixels, rng, config.noise_sigma)
                for index in range(config.distinct_photos)]
    extra = max(1, round(config.photos * config.new_share))
    added = []
    for trial in range(config.trials):  # photos no earlier night had, up to 20 distinct a run
        new = [photo(tiles[1000 + 20 * trial + index], config.megapixels, rng, config.noise_sigma)
               for index in range(min(extra, 20))]
        added.append([new[index % len(new)] for index in range(extra)])
    return [distinct[index % len(distinct)] for index in range(config.photos)], added


class Store:
    """Where one (kind, backend, path) keeps its files: a folder, or a prefix of a bucket of its own on the
    moto server (moto scans a whole bucket for each ListObjectsV2 page: another row's objects in the same
    bucket would make this row's listing slower, and slower as the run goes on)."""

    def __init__(self, backend: str, root: Path, name: str, client=None):
        self.backend, self.client, self.bucket = backend, client, f"noop-night-{name}"
        self.objects = 0  # files written
        self.folder, self.prefix = root / name, f"{name}/"
        self.empty = root / "empty" if backend == "local" else None
        if backend == "local":
            self.folder.mkdir(parents=True)
            self.empty.mkdir(exist_ok=True)
        else:
            client.create_bucket(Bucket=self.bucket)

    @property
    def uri(self) -> str:
        return str(self.folder) if self.backend == "local" else f"s3://{self.bucket}/{self.prefix}"

    @property
    def empty_uri(self) -> str:
        return str(self.empty) if self.backend == "local" else f"s3://{self.bucket}/empty/"

    def write(self, files: list[bytes], start: int) -> None:
        self.objects += len(files)
        names = [f"{start + index:06d}.jpg" for index in range(len(files))]
        if self.backend == "local":
            for name, data in zip(names, files):
                (self.folder / name).write_bytes(data)
            return
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda pair: self.client.put_object(Bucket=self.bucket, Key=self.prefix + pair[0],
                                                              Body=pair[1]), zip(names, files)))


# ------------------------------------------------------------------------------------------------ the runs


DATABASES: list[str] = []  # made by this run, dropped at its end


def fresh_database() -> str:
    name = f"noop_night_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    DATABASES.append(name)
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    from tasks.store import db

    db.migrate(db.engine(url))
    return url


def cli_run(uri: str, db_url: str, scratch: Path) -> tuple[float, dict]:
    out = scratch / f"counts-{uuid.uuid4().hex[:6]}.json"
    env = {**os.environ, "HASHTAGGER_DB_URL": db_url}
    started = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--child", str(out), "tag", uri, "--quiet", "--json"], env=env,
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started, json.loads(out.read_text())


def dag_run(uri: str, db_url: str, key: str, shards: int) -> tuple[float, dict]:
    """plan_night, then tag_shard per shard with work, as the DAG wires them (shards one after another)."""
    from tasks import pipeline
    from tasks.pipeline.models import champion_path

    COUNTS.update(dict.fromkeys(COUNTS, 0))
    before, tagged = io_read_bytes(), 0
    started = time.perf_counter()
    model_path = str(champion_path("cifar10", db_url))
    found = pipeline.plan_night(uri, model_path, key, shards, db_url)
    planned = found["shards"]  # a small night runs fewer shards than asked (tasks/tag/plan.py)
    for shard in range(planned if found["new"] else 0):
        summary = pipeline.tag_shard(uri, model_path, shard, planned, pipeline.shard_run_id(key, shard, planned),
                                     db_url, manifest=key)
        tagged += summary["tagged"]
    return time.perf_counter() - started, {**COUNTS, "io_read_bytes": io_read_bytes() - before, "tagged": tagged}


def measured_run(path: str, store: Store, db_url: str, night: str, config: NightConfig, scratch: Path) -> Measured:
    """Drop the page cache, warm the program on an empty folder, then run the night and count."""
    drop_caches()
    if path == "cli":
        # the first empty run warms the program's files; the median of the next three is its start-up
        startup = float(np.median([cli_run(store.empty_uri, db_url, scratch)[0] for _ in range(4)][1:]))
        seconds, counts = cli_run(store.uri, db_url, scratch)
        tagged = _cli_tagged(db_url)
    else:
        from tasks import pipeline

        pipeline.serving_model(None, db_url=db_url)  # the model's files, as the CLI's warm-up reads them
        dag_run(store.empty_uri, db_url, f"warm-{uuid.uuid4().hex[:6]}", config.shards)
        startup = 0.0
        seconds, counts = dag_run(store.uri, db_url, f"nightly-{night}-{uuid.uuid4().hex[:6]}", config.shards)
        tagged = counts["tagged"]
    return Measured(night, round(seconds, 3), counts["listings"], counts["pages"], counts["image_bytes"],
                    counts["images_read"], counts["io_read_bytes"] if store.backend == "local" else None, tagged,
                    round(startup, 3), (round(seconds, 3),))


def drop_databases() -> None:
    """Drop the databases this run made (WITH (FORCE): the run's own pooled connections may be open)."""
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        for name in DATABASES:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _cli_tagged(db_url: str) -> int:
    """Images the last CLI run tagged, from its record."""
    with sa.create_engine(db_url).connect() as connection:
        return connection.execute(sa.text("SELECT tagged FROM tagging_runs ORDER BY started_at DESC LIMIT 1")).scalar()


def three_nights(kind: str, files: tuple[list[bytes], list[list[bytes]]], store: Store, path: str,
                 config: NightConfig, scratch: Path) -> list[Measured]:
    """The first night once, then the no-op and the 1%-new night in turns, `config.trials` times each (so
    a change in the machine's load meets both alike)."""
    first, added = files
    store.write(first, 0)
    db_url = fresh_database()
    nights = [measured_run(path, store, db_url, "first", config, scratch)]
    noop, new, written = [], [], len(first)
    for more in added:
        noop.append(measured_run(path, store, db_url, "no-op", config, scratch))
        store.write(more, written)
        written += len(more)
        new.append(measured_run(path, store, db_url, f"{config.new_share:.0%} new", config, scratch))
    nights += [Measured.median_of(noop), Measured.median_of(new)]
    for night in nights:
        print(f"{kind} {store.backend} {path} {night}", flush=True)
    return nights


# ------------------------------------------------------------------------------------------------ the table


def list_page_cost(client, bucket: str, prefix: str, pages: int = 5) -> float:
    """Median seconds of one ListObjectsV2 page of 1,000 keys from the moto server."""
    times = []
    token = None
    for _ in range(pages):
        started = time.perf_counter()
        more = {"ContinuationToken": token} if token else {}
        answer = client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1000, **more)
        times.append(time.perf_counter() - started)
        token = answer.get("NextContinuationToken")
        if not token:
            break
    return float(np.median(times))


def table(rows: list[tuple[str, str, str, list[Measured]]]) -> str:
    lines = ["| images | source | path | night | listings | ListObjectsV2 pages | images read | image bytes read | "
             "read_bytes (/proc) | tagged | seconds | each run, s | start-up s | beyond start-up, % of first | "
             "issue 24's bound |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|"]
    for kind, backend, path, nights in rows:
        share = shares(nights, photos="photos" in kind)  # kind: main's label, "2,000 photos of 3 MP"
        for night, (percent, bound) in zip(nights, share):
            verdict = "" if bound is None else f"<= {bound:.1f}%: {'met' if percent <= bound else 'MISSED'}"
            lines.append(f"| {kind} | {backend} | {path} | {night.night} | {night.listings} | {night.pages} | "
                         f"{night.images_read:,} | {night.image_bytes:,} | "
                         f"{'-' if night.io_read_bytes is None else f'{night.io_read_bytes:,}'} | {night.tagged:,} | "
                         f"{night.seconds:.2f} | {' / '.join(f'{run:.2f}' for run in night.runs)} | "
                         f"{night.startup:.2f} | {percent:.1f}% | {verdict} |")
    return "\n".join(lines)


def shares(nights: list[Measured], photos: bool) -> list[tuple[float, float | None]]:
    """Each night's seconds beyond start-up as a % of the first night's, and issue 24's bound on it: a
    no-op night of photos at most 5% (`NOOP_BOUND`), a 1%-new night at most the no-op's % plus 2."""
    first, noop, new = ((night.seconds - night.startup) for night in nights)
    noop_share, new_share = 100 * noop / first, 100 * new / first
    return [(100.0, None), (noop_share, NOOP_BOUND if photos else None), (new_share, noop_share + NEW_BOUND)]


NOOP_BOUND = 5.0  # % of the first night, beyond start-up: what a no-op night of 3 MP photos may cost
NEW_BOUND = 2.0  # % of the first night a 1%-new night may cost beyond the no-op's


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    load = os.getloadavg()
    return (f"{socket.gethostname()}: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
            f"load average at the end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")


def start_moto(scratch: Path):
    """A moto S3 server in its own process (so its work is not this process's), and a client of it."""
    import boto3

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-p", str(port)],
                              stdout=(scratch / "moto.log").open("w"), stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1")
    client = boto3.client("s3")
    for _ in range(100):
        try:
            client.list_buckets()
            break
        except Exception:  # noqa: BLE001  not answering yet
            time.sleep(0.1)
    return server, client


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiles", type=int, default=NightConfig.tiles, help="CIFAR tiles on the first night "
                        "(default %(default)s)")
    parser.add_argument("--photos", type=int, default=NightConfig.photos, help="3 MP photos on the first night "
                        "(default %(default)s)")
    parser.add_argument("--backends", default="local,s3", help="local and/or s3, comma-separated (default %(default)s)")
    parser.add_argument("--paths", default="cli,dag", help="cli and/or dag, comma-separated (default %(default)s)")
    parser.add_argument("--trials", type=int, default=NightConfig.trials,
                        help="runs of the no-op and of the 1%%-new night each (their median is shown)")
    parser.add_argument("--output", default=str(REPO / "reports" / "noop_night.md"),
                        help="the report written (default: the committed %(default)s, replaced)")
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error("--trials must be at least 1")
    for option, given, known in (("--backends", args.backends, {"local", "s3"}), ("--paths", args.paths, {"cli", "dag"})):
        unknown = set(given.split(",")) - known
        if unknown:
            parser.error(f"{option}: {', '.join(sorted(unknown))} is not one of {', '.join(sorted(known))}")
    config = NightConfig(tiles=args.tiles, photos=args.photos, backends=tuple(args.backends.split(",")),
                         paths=tuple(args.paths.split(",")), trials=args.trials)
    install_counters()
    scratch = Path(tempfile.mkdtemp(prefix="noop-night-"))
    os.environ["HASHTAGGER_HOME"] = str(scratch / "home")
    server, client = start_moto(scratch) if "s3" in config.backends else (None, None)
    rows, stores, started = [], [], time.time()
    try:
        tiles = cifar_jpegs()
        for kind, label in (("photos", f"{config.photos:,} photos of {config.megapixels:g} MP"),
                            ("tiles", f"{config.tiles:,} CIFAR tiles")):
            files = corpus(kind, config, tiles)
            for backend in config.backends:
                for path in config.paths:
                    store = Store(backend, scratch / "data", f"{kind}-{path}", client)
                    stores.append(store)
                    rows.append((label, backend, path, three_nights(kind, files, store, path, config, scratch)))
                    # the table so far, so that a run cut off (hours at full size) keeps what it measured
                    Path(args.output).write_text(render(rows, config, None, time.time() - started, partial=True))
        # a page of the largest bucket made (the tile rows', when they ran)
        largest = max((row for row in stores if row.backend == "s3"), key=lambda row: row.objects, default=None)
        page = (list_page_cost(client, largest.bucket, largest.prefix), largest.objects) if largest else None
    finally:
        if server:
            server.terminate()
        shutil.rmtree(scratch, ignore_errors=True)
        drop_databases()
    report = render(rows, config, page, time.time() - started)
    Path(args.output).write_text(report)
    print(report)
    return 0


def render(rows, config: NightConfig, page_seconds: tuple[float, int] | None, wall: float,
           partial: bool = False) -> str:
    """The report; `page_seconds`: (seconds of one listing page, objects in its bucket), None without S3."""
    command = f"python benchmarks/noop_night.py --tiles {config.tiles} --photos {config.photos} --trials {config.trials}"
    if config.backends != NightConfig.backends:
        command += f" --backends {','.join(config.backends)}"
    if config.paths != NightConfig.paths:
        command += f" --paths {','.join(config.paths)}"
    planned = 2 * len(config.backends) * len(config.paths)
    so_far = f" **So far: {len(rows)} of {planned} rows; the run goes on.**" if partial else ""
    page = (f"\nOne ListObjectsV2 page of 1,000 keys from the moto server (its own process, this machine), in a "
            f"bucket of {page_seconds[1]:,} objects: {page_seconds[0] * 1000:.0f} ms (median of up to 5 pages): "
            "moto, not AWS.\n") if page_seconds else ""
    return (f"# A night with nothing new (issue 24)\n\n`{command}` ({wall / 60:.0f} min), on {machine()}.\n\n"
            f"The first night once; the no-op and the {config.new_share:.0%}-new night {config.trials} times each, in "
            f"turns, each {config.new_share:.0%}-new run with another {config.new_share:.0%} added: seconds is their "
            "median (each run's beside it), a count the largest of the runs'. Issue 24's bound (the last column): "
            f"a no-op night of photos at most {NOOP_BOUND:g}% of the first night's seconds beyond start-up; a "
            f"{config.new_share:.0%}-new night at most the no-op's share plus {NEW_BOUND:g} points (at small sizes the fixed "
            "costs of a run dominate and rows miss: the bound is for the issue's sizes). "
            f"Each run after `sync; echo 3 > /proc/sys/vm/drop_caches` and a warm-up run on an empty folder (the "
            f"CLI's start-up is the median of three more such runs). DAG: plan_night + {config.shards} shards in one process, one "
            "after another. Image bytes read: the lengths Source.read returned (the product's reads, counted "
            "by wrapping them); read_bytes: /proc/<pid>/io of the process (disk reads, model and Python "
            "included; local folders only: a bucket's bytes come over the network from moto, whose objects "
            "are in its memory, so dropping the page cache does not touch them)." + so_far + "\n\n"
            + table(rows) + "\n" + page)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        sys.exit(child(sys.argv[2], sys.argv[3:]))
    sys.exit(main())
