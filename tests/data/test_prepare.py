"""`hashtagger data prepare`: official CIFAR archives (served over local HTTP) and class-per-folder trees.

The official-format archives are built here, small (40 images a batch), with the same layout, pickles
and CHW row-major pixels as cifar-10-python.tar.gz and cifar-100-python.tar.gz. No test touches the
network. Tests marked slow read the real CIFAR JPEG archives in ../shared/data beside the checkout.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import io
import json
import os
import pickle
import re
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tasks.data import dataset
from tasks.data import prepare
from tasks.config import Settings
from tasks.data.download import DownloadError
from tasks.data.prepare import CIFAR10_CLASSES, DataError, PrepareConfig

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
HASHTAGGER = Path(sys.executable).parent / "hashtagger"
OFFICIAL_MD5 = {"cifar10": "c58f30108f718f92721af3b95e74349a",
                "cifar100": "eb9058c3a382ffc7106e4002c42a8d85"}
PER_BATCH = 40  # cifar10: 4 images of each class per batch, 200 train and 40 test images in all
COUNTS_LINE = re.compile(r"^(?P<name>\S+) version (?P<version>[0-9a-f]{16}): (?P<train>[\d,]+) train, "
                         r"(?P<val>[\d,]+) validation, (?P<test>[\d,]+) test images; (?P<classes>\d+) "
                         r"classes, (?P<low>[\d,]+)(?:-(?P<high>[\d,]+))? test images? per class$", re.M)


# ---------------------------------------------------------------------------------------------- fixtures

@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "hashtagger-home"
    monkeypatch.setenv("HASHTAGGER_HOME", str(home))
    return home


@pytest.fixture
def settings(home) -> Settings:
    return Settings.from_env()


def files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def rows(images: np.ndarray) -> np.ndarray:
    """N x 32 x 32 x 3 (HWC) -> N x 3072 rows, channel-major as in the official batches."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), 3072)


def marker_image() -> np.ndarray:
    """An image whose orientation and channel order are unmistakable (R by row, G by column, B fixed)."""
    image = np.zeros((32, 32, 3), np.uint8)
    image[..., 0] = np.arange(32)[:, None] * 8
    image[..., 1] = np.arange(32)[None, :] * 4 + 3
    image[..., 2] = 200
    return image


def _write_pickle(path: Path, obj) -> None:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=2)


def _tar_folder(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)  # the folder's own entry first, as in the official archives
    return archive


def build_cifar10_archive(where: Path, seed: int = 0) -> tuple[Path, dict]:
    """cifar-10-python.tar.gz in the official layout; returns it and the HWC images and labels put in."""
    rng = np.random.default_rng(seed)
    folder = where / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    xs, ys = [], []
    for number in range(1, 7):
        x = rng.integers(0, 256, (PER_BATCH, 32, 32, 3), dtype=np.uint8)
        y = rng.permutation(np.arange(PER_BATCH) % 10)
        if number == 1:
            x[0] = marker_image()
        xs.append(x)
        ys.append(y)
        batch = {b"batch_label": f"batch {number}".encode(), b"labels": [int(v) for v in y],
                 b"data": rows(x), b"filenames": [f"img_{number}_{i}.png".encode() for i in range(PER_BATCH)]}
        _write_pickle(folder / (f"data_batch_{number}" if number <= 5 else "test_batch"), batch)
    _write_pickle(folder / "batches.meta", {b"num_cases_per_batch": PER_BATCH, b"num_vis": 3072,
                                            b"label_names": [c.encode() for c in CIFAR10_CLASSES]})
    (folder / "readme.html").write_text("<html>not a pickle, as in the official archive</html>")
    archive = _tar_folder(folder, where / "cifar-10-python.tar.gz")
    put_in = {"x_train": np.concatenate(xs[:5]), "y_train": np.concatenate(ys[:5]),
              "x_test": xs[5], "y_test": ys[5]}
    return archive, put_in


def build_cifar100_archive(where: Path, train_per_class: int = 3, test_per_class: int = 1,
                           seed: int = 0) -> tuple[Path, dict]:
    """cifar-100-python.tar.gz in the official layout (train, test, meta and the stray file.txt~)."""
    labels = prepare.cifar100_labels()
    fine_to_coarse = np.asarray(labels["fine_to_coarse"])
    rng = np.random.default_rng(seed)
    folder = where / "cifar-100-python"
    folder.mkdir(parents=True)
    put_in = {}
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        fine = rng.permutation(np.repeat(np.arange(100), per_class))
        x = rng.integers(0, 256, (len(fine), 32, 32, 3), dtype=np.uint8)
        if split == "train":
            x[0] = marker_image()
        put_in[f"x_{split}"], put_in[f"y_{split}"] = x, fine
        _write_pickle(folder / split, {
            b"filenames": [f"{split}_{i}.png".encode() for i in range(len(fine))],
            b"batch_label": split.encode(), b"fine_labels": [int(v) for v in fine],
            b"coarse_labels": [int(v) for v in fine_to_coarse[fine]], b"data": rows(x)})
    _write_pickle(folder / "meta", {b"fine_label_names": [n.encode() for n in labels["fine_names"]],
                                    b"coarse_label_names": [n.encode() for n in labels["coarse_names"]]})
    (folder / "file.txt~").write_text("an editor's backup file, shipped in the official archive")
    return _tar_folder(folder, where / "cifar-100-python.tar.gz"), put_in


class _Quiet:
    def log_message(self, *args) -> None:
        pass


class _FileHandler(_Quiet, http.server.SimpleHTTPRequestHandler):
    pass


@contextlib.contextmanager
def http_server(handler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class _Www:
    """Files served from a folder, with a log of the paths that were asked for."""

    def __init__(self, folder: Path, url: str, requested: list[str]):
        self.folder, self.url, self.requested = folder, url, requested


@pytest.fixture
def www(tmp_path):
    folder = tmp_path / "www"
    folder.mkdir()
    requested: list[str] = []

    class Handler(_FileHandler):
        def do_GET(self):
            requested.append(self.path)
            super().do_GET()

    with http_server(functools.partial(Handler, directory=str(folder))) as (_, url):
        yield _Www(folder, url, requested)


@pytest.fixture(scope="module")
def cifar10_archive(tmp_path_factory):
    return build_cifar10_archive(tmp_path_factory.mktemp("cifar10"))


@pytest.fixture(scope="module")
def cifar100_archive(tmp_path_factory):
    return build_cifar100_archive(tmp_path_factory.mktemp("cifar100"))


def serve_as(www: _Www, archive: Path, name: str | None = None) -> str:
    name = name or archive.name
    (www.folder / name).write_bytes(archive.read_bytes())
    return f"{www.url}/{name}"


def pairs(x: np.ndarray, y: np.ndarray) -> list[tuple[bytes, int]]:
    """(pixels, label) of each image, sorted: compares splits regardless of order."""
    return sorted((np.ascontiguousarray(image).tobytes(), int(label)) for image, label in zip(x, y))


def find(x: np.ndarray, image: np.ndarray) -> list[int]:
    return [i for i in range(len(x)) if np.array_equal(x[i], image)]


# ---------------------------------------------------------------------------------------- official archives

def test_cifar10_official_archive_over_http(www, cifar10_archive, settings, home):
    archive, put_in = cifar10_archive
    url = serve_as(www, archive)
    manifest = prepare.prepare("cifar10", url, settings, PrepareConfig(validation_size=20),
                               md5=md5(archive), progress=False)

    assert manifest.name == "cifar10" and manifest.source == url
    assert manifest.class_names == list(CIFAR10_CLASSES)
    assert manifest.counts == {"train": 180, "validation": 20, "test": 40}
    assert manifest.test_per_class == [4] * 10
    assert manifest.image_shape == [32, 32, 3]
    assert manifest.skipped_files == []
    assert manifest.coarse_class_names is None and manifest.fine_to_coarse is None
    assert manifest.prepare_config == {"validation_size": 20, "test_fraction": 0.1, "seed": 0}
    assert files_in(home / "downloads") == [home / "downloads" / "cifar-10-python.tar.gz"]

    loaded = dataset.load("cifar10")
    assert loaded.version == manifest.version
    assert (home / "datasets" / "cifar10" / "LATEST").read_text().strip() == manifest.version
    for key in ("x_train", "x_val", "x_test"):
        assert loaded[key].dtype == np.uint8 and loaded[key].shape[1:] == (32, 32, 3)
    # pixel round trip: the marker image comes out identical, in HWC order, with its label
    where = find(np.concatenate([loaded["x_train"], loaded["x_val"]]), marker_image())
    assert len(where) == 1
    assert np.concatenate([loaded["y_train"], loaded["y_val"]])[where[0]] == put_in["y_train"][0]
    # every image keeps its label; train + validation is exactly the official train set
    assert pairs(np.concatenate([loaded["x_train"], loaded["x_val"]]),
                 np.concatenate([loaded["y_train"], loaded["y_val"]])) == pairs(put_in["x_train"],
                                                                                put_in["y_train"])
    assert pairs(loaded["x_test"], loaded["y_test"]) == pairs(put_in["x_test"], put_in["y_test"])
    # validation is stratified: 2 of each class's 20 train images
    assert np.bincount(loaded["y_val"], minlength=10).tolist() == [2] * 10
    assert np.bincount(loaded["y_train"], minlength=10).tolist() == [18] * 10


def test_prepare_is_deterministic_and_reuses_the_version(www, cifar10_archive, settings, home):
    archive, _ = cifar10_archive
    url = serve_as(www, archive)
    config = PrepareConfig(validation_size=20)
    first = prepare.prepare("cifar10", url, settings, config, md5=md5(archive), progress=False)
    version_dir = home / "datasets" / "cifar10" / first.version
    stamp = (version_dir / "manifest.json").stat().st_mtime_ns
    first_val = np.load(version_dir / "y_val.npy")

    second = prepare.prepare("cifar10", url, settings, config, md5=md5(archive), progress=False)
    assert second.version == first.version
    assert second == first  # the stored manifest, created_at included: nothing was rewritten
    assert (version_dir / "manifest.json").stat().st_mtime_ns == stamp
    assert www.requested.count("/cifar-10-python.tar.gz") == 1  # the checked download is reused
    entries = sorted(p.name for p in (home / "datasets" / "cifar10").iterdir())
    assert entries == sorted(["LATEST", first.version])  # no staging folders, one version

    # the same images prepared in a fresh home give the same version and the same split
    other = Settings(home=home.parent / "other-home")
    third = prepare.prepare("cifar10", str(archive), other, config, progress=False)
    assert third.version == first.version
    assert np.array_equal(np.load(other.datasets_dir / "cifar10" / third.version / "y_val.npy"), first_val)

    # another seed carves another validation set: another version, and LATEST follows it
    fourth = prepare.prepare("cifar10", str(archive), settings, PrepareConfig(validation_size=20, seed=1),
                             progress=False)
    assert fourth.version != first.version
    assert dataset.load("cifar10").version == fourth.version
    assert dataset.load("cifar10", first.version).version == first.version


def test_official_archive_from_a_local_path(cifar10_archive, settings):
    archive, put_in = cifar10_archive
    manifest = prepare.prepare("cifar10", str(archive), settings, PrepareConfig(validation_size=20),
                               progress=False)
    assert manifest.counts == {"train": 180, "validation": 20, "test": 40}
    assert manifest.source == str(archive)
    assert files_in(settings.downloads_dir) == []  # a local archive is read in place, not copied


def test_local_archive_with_the_wrong_md5_is_refused(cifar10_archive, settings):
    archive, _ = cifar10_archive
    with pytest.raises(DownloadError, match="md5"):
        prepare.prepare("cifar10", str(archive), settings, md5="0" * 32, progress=False)
    assert files_in(settings.datasets_dir) == []
    manifest = prepare.prepare("cifar10", str(archive), settings, PrepareConfig(validation_size=20),
                               md5=md5(archive).upper(), progress=False)
    assert manifest.counts["test"] == 40


def test_official_archive_under_a_name_of_ones_own(cifar10_archive, settings):
    archive, _ = cifar10_archive
    manifest = prepare.prepare("mycifar", str(archive), settings, PrepareConfig(validation_size=20),
                               progress=False)
    assert manifest.class_names == list(CIFAR10_CLASSES)
    assert manifest.counts == {"train": 180, "validation": 20, "test": 40}


def test_cifar100_archive_given_for_cifar10_is_a_data_error(cifar100_archive, settings):
    archive, _ = cifar100_archive
    with pytest.raises(DataError, match="not an official cifar10 archive"):
        prepare.prepare("cifar10", str(archive), settings, progress=False)
    assert files_in(settings.datasets_dir) == []


def test_cifar100_official_archive_keeps_coarse_labels(www, cifar100_archive, settings):
    archive, put_in = cifar100_archive
    url = serve_as(www, archive)
    manifest = prepare.prepare("cifar100", url, settings, PrepareConfig(validation_size=100),
                               md5=md5(archive), progress=False)
    labels = prepare.cifar100_labels()
    assert manifest.class_names == labels["fine_names"]
    assert manifest.coarse_class_names == labels["coarse_names"]
    assert len(manifest.coarse_class_names) == 20
    # derived from the archive's own fine and coarse labels, and the same as the published mapping
    assert manifest.fine_to_coarse == labels["fine_to_coarse"]
    assert manifest.counts == {"train": 270, "validation": 30, "test": 100}
    assert manifest.test_per_class == [1] * 100
    loaded = dataset.load("cifar100")
    assert np.bincount(loaded["y_val"], minlength=100).max() == 1  # stratified: never 2 of a class
    assert pairs(np.concatenate([loaded["x_train"], loaded["x_val"]]),
                 np.concatenate([loaded["y_train"], loaded["y_val"]])) == pairs(put_in["x_train"],
                                                                                put_in["y_train"])
    assert pairs(loaded["x_test"], loaded["y_test"]) == pairs(put_in["x_test"], put_in["y_test"])
    where = find(np.concatenate([loaded["x_train"], loaded["x_val"]]), marker_image())
    assert len(where) == 1


def test_cifar100_fine_to_coarse_is_derived_from_the_archive(tmp_path, settings):
    """An archive whose coarse labels differ from the published mapping: the archive's own are kept."""
    archive, put_in = build_cifar100_archive(tmp_path / "src", train_per_class=2)
    folder = tmp_path / "src" / "cifar-100-python"
    train = pickle.loads((folder / "train").read_bytes(), encoding="bytes")
    train[b"coarse_labels"] = [fine % 20 for fine in train[b"fine_labels"]]
    _write_pickle(folder / "train", train)
    archive = _tar_folder(folder, tmp_path / "cifar-100-python.tar.gz")
    manifest = prepare.prepare("cifar100", str(archive), settings, PrepareConfig(validation_size=20),
                               progress=False)
    assert manifest.fine_to_coarse == [fine % 20 for fine in range(100)]


# ----------------------------------------------------------------------------------------- failed downloads

def _nothing_left(home: Path) -> None:
    assert files_in(home / "downloads") == []
    assert files_in(home / "datasets") == []


def test_wrong_md5_fails_and_leaves_nothing(www, cifar10_archive, settings, home):
    archive, _ = cifar10_archive
    url = serve_as(www, archive)
    with pytest.raises(DownloadError, match="md5") as error:
        prepare.prepare("cifar10", url, settings, md5="0123456789abcdef0123456789abcdef", progress=False)
    assert md5(archive) in str(error.value)
    _nothing_left(home)


class _Truncating(_Quiet, http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body[: len(self.body) // 3])
        self.wfile.flush()
        self.close_connection = True


def test_truncated_download_fails_and_leaves_nothing(cifar10_archive, settings, home):
    archive, _ = cifar10_archive
    handler = type("Handler", (_Truncating,), {"body": archive.read_bytes()})
    with http_server(handler) as (_, url):
        for checksum in (md5(archive), None):
            with pytest.raises(DownloadError, match="truncated"):
                prepare.prepare("cifar10", f"{url}/cifar-10-python.tar.gz", settings, md5=checksum,
                                progress=False)
            _nothing_left(home)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_official_file_name_without_md5_uses_the_published_md5(name, www, cifar10_archive,
                                                               cifar100_archive, settings, home):
    """Our small archive served under the official name is not the published archive: refused."""
    archive = (cifar10_archive if name == "cifar10" else cifar100_archive)[0]
    url = serve_as(www, archive)
    with pytest.raises(DownloadError, match="md5") as error:
        prepare.prepare(name, url, settings, progress=False)
    assert OFFICIAL_MD5[name] in str(error.value)
    _nothing_left(home)
    # a query string does not hide the official file name
    with pytest.raises(DownloadError, match=OFFICIAL_MD5[name]):
        prepare.prepare(name, url + "?raw=true", settings, progress=False)
    _nothing_left(home)


def test_official_archives_have_the_published_md5s():
    assert {name: archive.md5 for name, archive in prepare.OFFICIAL.items()} == OFFICIAL_MD5
    assert prepare.OFFICIAL["cifar10"].url.endswith("/cifar-10-python.tar.gz")
    assert prepare.OFFICIAL["cifar100"].url.endswith("/cifar-100-python.tar.gz")


def test_url_with_a_query_string_downloads_under_its_file_name(www, cifar10_archive, settings, home):
    archive, _ = cifar10_archive
    url = serve_as(www, archive) + "?download=1"
    prepare.prepare("cifar10", url, settings, PrepareConfig(validation_size=20), md5=md5(archive),
                    progress=False)
    assert files_in(home / "downloads") == [home / "downloads" / "cifar-10-python.tar.gz"]


def test_http_404_is_a_download_error(www, settings, home):
    with pytest.raises(DownloadError, match="404"):
        prepare.prepare("cifar10", f"{www.url}/nothing-here.tar.gz", settings, progress=False)
    _nothing_left(home)


def test_missing_local_source_is_a_data_error(tmp_path, settings):
    with pytest.raises(DataError, match="no such file"):
        prepare.prepare("cifar10", str(tmp_path / "nope.tar.gz"), settings, progress=False)


def test_no_source_for_an_unknown_dataset_is_a_data_error(settings):
    with pytest.raises(DataError, match="--source"):
        prepare.prepare("pets", None, settings, progress=False)


# ---------------------------------------------------------------------------------------------- image trees

def tile(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def build_tree(root: Path, classes, train_per_class: int, test_per_class: int | None,
               top: str | None = None) -> dict[str, list[tuple[bytes, int]]]:
    """A class-per-folder tree of lossless 32x32 PNGs; returns the (pixels, class index) put in per split.

    test_per_class None: no train/ and test/ folders, class folders at the top (under `top` if given).
    """
    base = root / top if top else root
    put_in: dict[str, list] = {"train": [], "test": []}
    seed = 0
    for index, name in enumerate(classes):
        for split, count in (("train", train_per_class), ("test", test_per_class or 0)):
            folder = base / split / name if test_per_class is not None else base / name
            folder.mkdir(parents=True, exist_ok=True)
            for number in range(count):
                seed += 1
                image = tile(seed)
                Image.fromarray(image).save(folder / f"{number:04d}.png")
                put_in[split].append((image.tobytes(), index))
    return {split: sorted(items) for split, items in put_in.items()}


def tar_gz(folder: Path, archive: Path, dot_prefix: bool = False) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="." if dot_prefix else folder.name)
    return archive


def test_tree_folder_with_train_and_test(tmp_path, settings):
    put_in = build_tree(tmp_path / "tree", CIFAR10_CLASSES, 10, 3)
    manifest = prepare.prepare("cifar10", str(tmp_path / "tree"), settings,
                               PrepareConfig(validation_size=10), progress=False)
    assert manifest.class_names == list(CIFAR10_CLASSES)  # official order, not alphabetical
    assert manifest.counts == {"train": 90, "validation": 10, "test": 30}
    assert manifest.test_per_class == [3] * 10
    assert manifest.skipped_files == []
    loaded = dataset.load("cifar10")
    assert np.bincount(loaded["y_val"], minlength=10).tolist() == [1] * 10
    assert pairs(np.concatenate([loaded["x_train"], loaded["x_val"]]),
                 np.concatenate([loaded["y_train"], loaded["y_val"]])) == put_in["train"]
    assert pairs(loaded["x_test"], loaded["y_test"]) == put_in["test"]


def test_tree_tarball_gives_the_same_version_as_the_folder(tmp_path, settings):
    build_tree(tmp_path / "mytree", CIFAR10_CLASSES, 10, 3)
    config = PrepareConfig(validation_size=10)
    from_folder = prepare.prepare("cifar10", str(tmp_path / "mytree"), settings, config, progress=False)
    archive = tar_gz(tmp_path / "mytree", tmp_path / "mytree.tar.gz")
    from_tar = prepare.prepare("cifar10", str(archive), settings, config, progress=False)
    assert from_tar.version == from_folder.version
    assert from_tar.counts == {"train": 90, "validation": 10, "test": 30}
    # `tar -C mytree -czf x.tar.gz .` names members ./train/cat/0000.png: read the same way
    dotted = tar_gz(tmp_path / "mytree", tmp_path / "dotted.tar.gz", dot_prefix=True)
    assert tarfile.open(dotted).getnames()[0] == "."
    from_dotted = prepare.prepare("cifar10", str(dotted), settings, config, progress=False)
    assert from_dotted.version == from_folder.version


def test_tree_tarball_over_http(www, tmp_path, settings, home):
    build_tree(tmp_path / "pets", ["cat", "dog"], 20, 5)
    archive = tar_gz(tmp_path / "pets", tmp_path / "pets.tar.gz")
    url = serve_as(www, archive)
    manifest = prepare.prepare("pets", url, settings, progress=False)  # no md5: none is known
    assert manifest.class_names == ["cat", "dog"]
    assert manifest.counts == {"train": 36, "validation": 4, "test": 10}
    assert files_in(home / "downloads") == [home / "downloads" / "pets.tar.gz"]


def test_tree_without_train_and_test_carves_test_out(tmp_path, settings):
    put_in = build_tree(tmp_path / "flat", CIFAR10_CLASSES, 30, None, top="images")
    manifest = prepare.prepare("cifar10", str(tmp_path / "flat"), settings,
                               PrepareConfig(validation_size=20, test_fraction=0.1), progress=False)
    # 300 images: 30 (10%) for test, 3 a class; 20 of the remaining 270 for validation, 2 a class
    assert manifest.counts == {"train": 250, "validation": 20, "test": 30}
    assert manifest.test_per_class == [3] * 10
    loaded = dataset.load("cifar10")
    assert np.bincount(loaded["y_val"], minlength=10).tolist() == [2] * 10
    everything = pairs(np.concatenate([loaded["x_train"], loaded["x_val"], loaded["x_test"]]),
                       np.concatenate([loaded["y_train"], loaded["y_val"], loaded["y_test"]]))
    assert everything == put_in["train"]  # nothing lost, nothing duplicated
    again = prepare.prepare("cifar10", str(tmp_path / "flat"), settings,
                            PrepareConfig(validation_size=20, test_fraction=0.1), progress=False)
    assert again.version == manifest.version


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def test_tree_with_odd_images_corrupt_files_and_clutter(tmp_path, settings):
    root = tmp_path / "pets"
    build_tree(root, ["cat", "dog"], 10, 2)
    train = root / "train"
    # other sizes and modes: resized/converted to 32x32 RGB
    (train / "cat" / "rgba-64x48.png").write_bytes(
        _encode(Image.new("RGBA", (64, 48), (255, 0, 0, 255)), "PNG"))
    (train / "dog" / "gray.jpg").write_bytes(_encode(Image.new("L", (50, 70), 128), "JPEG", quality=95))
    (train / "dog" / "palette.GIF").write_bytes(
        _encode(Image.new("RGB", (32, 32), (0, 0, 255)).convert("P"), "GIF"))
    # broken files: skipped, and listed
    (train / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 this is not really a JPEG")
    (train / "dog" / "empty.png").write_bytes(b"")
    # clutter: ignored silently
    (root / "README.txt").write_text("about this tree")
    (train / "cat" / "notes.md").write_text("not an image")
    (train / "cat" / ".DS_Store").write_bytes(b"\x00\x01")
    (train / "dog" / "._0000.png").write_bytes(b"AppleDouble junk")
    (root / ".hidden" / "cat").mkdir(parents=True)
    (root / ".hidden" / "cat" / "x.png").write_bytes(_encode(Image.new("RGB", (32, 32)), "PNG"))

    manifest = prepare.prepare("pets", str(root), settings, PrepareConfig(validation_size=2),
                               progress=False)
    assert manifest.class_names == ["cat", "dog"]
    assert manifest.counts == {"train": 21, "validation": 2, "test": 4}
    skipped = manifest.skipped_files
    assert len(skipped) == 2
    assert any(entry.startswith("train/cat/broken.jpg") for entry in skipped)
    assert any(entry.startswith("train/dog/empty.png") for entry in skipped)
    assert json.loads((settings.datasets_dir / "pets" / manifest.version / "manifest.json")
                      .read_text())["skipped_files"] == skipped

    loaded = dataset.load("pets")
    x = np.concatenate([loaded["x_train"], loaded["x_val"]])
    y = np.concatenate([loaded["y_train"], loaded["y_val"]])
    assert x.shape[1:] == (32, 32, 3) and x.dtype == np.uint8
    red = [i for i in range(len(x)) if (x[i] == (255, 0, 0)).all()]
    assert len(red) == 1 and y[red[0]] == 0
    gray = [i for i in range(len(x)) if (np.abs(x[i].astype(int) - 128) <= 2).all()]
    assert len(gray) == 1 and y[gray[0]] == 1
    blue = [i for i in range(len(x)) if (x[i] == (0, 0, 255)).all()]
    assert len(blue) == 1 and y[blue[0]] == 1


def test_decode_tile_resizes_and_converts():
    assert prepare.decode_tile(_encode(Image.new("RGBA", (64, 48), (1, 2, 3, 4)), "PNG")).shape == (32, 32, 3)
    assert prepare.decode_tile(_encode(Image.new("L", (10, 10), 7), "PNG")).tolist() == \
        np.full((32, 32, 3), 7, np.uint8).tolist()
    image = tile(5)
    assert np.array_equal(prepare.decode_tile(_encode(Image.fromarray(image), "PNG")), image)
    assert np.array_equal(prepare.decode_tile(_encode(Image.fromarray(image), "BMP")), image)
    with pytest.raises(Exception):
        prepare.decode_tile(b"garbage")


def test_decode_tile_follows_exif_orientation():
    """A phone photo stored sideways with an EXIF orientation tag comes out the way it is seen."""
    stored = Image.new("RGB", (64, 32), (255, 0, 0))
    stored.paste((0, 0, 255), (32, 0, 64, 32))  # stored: red left half, blue right half
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    tile_ = prepare.decode_tile(_encode(stored, "JPEG", quality=95, exif=exif.tobytes()))
    assert tile_[2, 16, 0] > 200 and tile_[2, 16, 2] < 60  # seen: red on top
    assert tile_[29, 16, 2] > 200 and tile_[29, 16, 0] < 60  # blue below


def test_tree_classes_must_match_cifar10(tmp_path, settings):
    build_tree(tmp_path / "wrong", ["apple", "pear"], 3, None)
    with pytest.raises(DataError, match="do not match") as error:
        prepare.prepare("cifar10", str(tmp_path / "wrong"), settings, progress=False)
    assert "apple" in str(error.value) and "airplane" in str(error.value)
    build_tree(tmp_path / "nine", CIFAR10_CLASSES[:9], 3, None)
    with pytest.raises(DataError, match="truck"):
        prepare.prepare("cifar10", str(tmp_path / "nine"), settings, progress=False)
    assert files_in(settings.datasets_dir) == []


def test_tree_mixing_top_level_classes_and_train_test_is_refused(tmp_path, settings):
    build_tree(tmp_path / "mixed", ["cat", "dog"], 3, 1)
    build_tree(tmp_path / "mixed", ["bird"], 3, None)
    with pytest.raises(DataError, match="mixes"):
        prepare.prepare("pets", str(tmp_path / "mixed"), settings, progress=False)


def test_tree_without_images_is_refused(tmp_path, settings):
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    (tmp_path / "empty" / "cat" / "notes.txt").write_text("no pictures here")
    with pytest.raises(DataError, match="no images"):
        prepare.prepare("pets", str(tmp_path / "empty"), settings, progress=False)


def test_source_that_is_neither_folder_nor_tarball_is_a_data_error(tmp_path, settings):
    junk = tmp_path / "images.zip"
    junk.write_bytes(b"PK\x03\x04 not really a zip either")
    with pytest.raises(DataError, match="neither a folder nor a tar"):
        prepare.prepare("pets", str(junk), settings, progress=False)


def test_cifar100_tree_keeps_coarse_labels(tmp_path, settings):
    labels = prepare.cifar100_labels()
    # alphabetical folder order differs from the official order; the class "train" lives under train/
    put_in = build_tree(tmp_path / "c100", labels["fine_names"], 3, 1, top="cifar100-jpeg")
    archive = tar_gz(tmp_path / "c100" / "cifar100-jpeg", tmp_path / "c100.tar.gz")
    manifest = prepare.prepare("cifar100", str(archive), settings, PrepareConfig(validation_size=100),
                               progress=False)
    assert manifest.class_names == labels["fine_names"]
    assert manifest.coarse_class_names == labels["coarse_names"]
    assert manifest.fine_to_coarse == labels["fine_to_coarse"]
    assert manifest.counts == {"train": 270, "validation": 30, "test": 100}
    assert manifest.test_per_class == [1] * 100
    loaded = dataset.load("cifar100")
    assert pairs(np.concatenate([loaded["x_train"], loaded["x_val"]]),
                 np.concatenate([loaded["y_train"], loaded["y_val"]])) == put_in["train"]
    assert pairs(loaded["x_test"], loaded["y_test"]) == put_in["test"]
    assert labels["fine_names"].index("train") in loaded["y_test"].tolist()


def test_custom_tree_has_no_coarse_labels(tmp_path, settings):
    build_tree(tmp_path / "pets", ["dog", "cat", "hamster"], 10, None)
    manifest = prepare.prepare("pets", str(tmp_path / "pets"), settings, progress=False)
    assert manifest.class_names == ["cat", "dog", "hamster"]  # sorted
    assert manifest.coarse_class_names is None and manifest.fine_to_coarse is None
    assert manifest.counts == {"train": 25, "validation": 2, "test": 3}  # validation: a tenth of train


# --------------------------------------------------------------------------------------- splitting, writing

def test_stratified_take_is_proportional_exact_and_deterministic():
    labels = np.repeat(np.arange(3), [50, 30, 20])
    mask = prepare.stratified_take(labels, 10, seed=0)
    assert mask.sum() == 10
    assert np.bincount(labels[mask], minlength=3).tolist() == [5, 3, 2]
    assert np.array_equal(mask, prepare.stratified_take(labels, 10, seed=0))
    assert not np.array_equal(mask, prepare.stratified_take(labels, 10, seed=1))
    # largest remainders: 7 of [5, 3, 2] -> [3.5, 2.1, 1.4] -> [4, 2, 1]
    odd = np.repeat(np.arange(3), [5, 3, 2])
    assert np.bincount(odd[prepare.stratified_take(odd, 7, seed=0)], minlength=3).tolist() == [4, 2, 1]
    for bad in (0, 100, 101):
        with pytest.raises(DataError):
            prepare.stratified_take(labels, bad, seed=0)


def test_a_failed_write_leaves_no_version_and_no_staging(cifar10_archive, settings, monkeypatch):
    archive, _ = cifar10_archive
    real_save = np.save
    calls = []

    def failing_save(path, array):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real_save(path, array)

    monkeypatch.setattr(prepare.np, "save", failing_save)
    with pytest.raises(OSError, match="No space"):
        prepare.prepare("cifar10", str(archive), settings, PrepareConfig(validation_size=20), progress=False)
    root = settings.datasets_dir / "cifar10"
    assert list(root.iterdir()) == []  # no version folder, no .staging-*, no LATEST
    monkeypatch.setattr(prepare.np, "save", real_save)
    manifest = prepare.prepare("cifar10", str(archive), settings, PrepareConfig(validation_size=20),
                               progress=False)
    assert dataset.load("cifar10").version == manifest.version


def test_load_before_prepare_says_what_to_run(settings):
    with pytest.raises(dataset.DatasetNotFound, match="hashtagger data prepare cifar10"):
        dataset.load("cifar10")


def test_load_of_an_unknown_version(cifar10_archive, settings):
    prepare.prepare("cifar10", str(cifar10_archive[0]), settings, PrepareConfig(validation_size=20),
                    progress=False)
    with pytest.raises(dataset.DatasetNotFound, match="no version"):
        dataset.load("cifar10", "0000000000000000")


# ---------------------------------------------------------------------------------------------- command line

def run_cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HASHTAGGER_HOME": str(home)}
    return subprocess.run([str(HASHTAGGER), "data", "prepare", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_cli_prints_the_counts_line(www, cifar10_archive, home):
    archive, _ = cifar10_archive
    url = serve_as(www, archive)
    result = run_cli("cifar10", "--source", url, "--md5", md5(archive), "--validation-size", "20",
                     "--quiet", home=home)
    assert result.returncode == 0, result.stderr
    match = COUNTS_LINE.search(result.stdout)
    assert match, result.stdout
    assert match.group("name", "train", "val", "test", "classes", "low", "high") == \
        ("cifar10", "180", "20", "40", "10", "4", None)  # one figure when every class has as many
    assert (home / "datasets" / "cifar10" / match["version"] / "manifest.json").exists()
    assert result.stderr == ""  # --quiet: no progress bar


def test_cli_reports_skipped_files(tmp_path, home):
    build_tree(tmp_path / "pets", ["cat", "dog"], 10, None)
    (tmp_path / "pets" / "cat" / "broken.png").write_bytes(b"not a png")
    result = run_cli("pets", "--source", str(tmp_path / "pets"), "--quiet", home=home)
    assert result.returncode == 0, result.stderr
    assert COUNTS_LINE.search(result.stdout)["train"] == "17"
    assert "skipped 1 unreadable file, e.g. cat/broken.png" in result.stdout


def test_per_class_counts_read_as_one_figure_when_every_class_has_as_many():
    from tasks.cli import data as data_cli

    assert data_cli.per_class_range([1000] * 10) == "1,000"
    assert data_cli.per_class_range([100, 85, 1200]) == "85-1,200"


def test_cli_wrong_md5_is_a_clear_error(www, cifar10_archive, home):
    url = serve_as(www, cifar10_archive[0])
    result = run_cli("cifar10", "--source", url, "--md5", "0" * 32, "--quiet", home=home)
    assert result.returncode != 0
    assert "md5" in result.stderr and "Traceback" not in result.stderr
    _nothing_left(home)


def test_cli_class_mismatch_is_a_clear_error(tmp_path, home):
    build_tree(tmp_path / "fruit", ["apple", "pear"], 3, None)
    result = run_cli("cifar10", "--source", str(tmp_path / "fruit"), "--quiet", home=home)
    assert result.returncode != 0
    assert "do not match" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------- real data (slow)

def shared_archive(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real CIFAR data not found: {path} (expected shared/data beside the checkout)")
    return path


@pytest.mark.slow
def test_real_cifar10_jpeg_tree(home):
    result = run_cli("cifar10", "--source", str(shared_archive("cifar10-jpeg.tar.gz")), "--quiet", home=home)
    assert result.returncode == 0, result.stderr
    assert "45,000 train, 5,000 validation, 10,000 test images; 10 classes, " \
           "1,000 test images per class" in result.stdout
    loaded = dataset.load("cifar10", settings=Settings(home=home))
    assert loaded.class_names == list(CIFAR10_CLASSES)
    assert loaded.manifest["test_per_class"] == [1000] * 10
    assert loaded.manifest["skipped_files"] == []
    assert np.bincount(loaded["y_val"], minlength=10).tolist() == [500] * 10
    assert loaded["x_train"].shape == (45000, 32, 32, 3)


@pytest.mark.slow
def test_real_cifar100_jpeg_tree(home):
    result = run_cli("cifar100", "--source", str(shared_archive("cifar100-jpeg.tar.gz")), "--quiet",
                     home=home)
    assert result.returncode == 0, result.stderr
    assert "45,000 train, 5,000 validation, 10,000 test images; 100 classes, " \
           "100 test images per class" in result.stdout
    loaded = dataset.load("cifar100", settings=Settings(home=home))
    labels = prepare.cifar100_labels()
    assert loaded.class_names == labels["fine_names"]
    assert loaded.manifest["coarse_class_names"] == labels["coarse_names"]
    assert loaded.manifest["fine_to_coarse"] == labels["fine_to_coarse"]
    assert loaded.manifest["test_per_class"] == [100] * 100
    assert np.bincount(loaded["y_val"], minlength=100).tolist() == [50] * 100
