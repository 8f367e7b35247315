"""The service layer's structure and contracts: the front ends call only tasks.pipeline, tasks/ has no
import cycle, the champion lookup writes nothing, and prepare and tag make the same tiles."""

from __future__ import annotations

import ast
import io
import sys
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image

from tasks import pipeline
from tasks.store import db

REPO = Path(__file__).resolve().parents[1]
FRONT_ENDS = sorted((REPO / "dags").glob("*.py")) + sorted((REPO / "tasks" / "cli").glob("*.py"))
# What a front end may import from this project: the service layer, settings, Airflow adapters, itself.
# tasks.errors (UserError, exit codes), tasks.quiet (TensorFlow's banners) and tasks.retries (Airflow's
# fail-fast) are front-end helpers, not pipeline stages (issue 15).
ALLOWED = ("tasks.pipeline", "tasks.config", "tasks.connections", "tasks.assets", "tasks.cli", "tasks.errors", "tasks.quiet",
           "tasks.retries")
THIRD_PARTY = {"airflow", "tqdm", "uvicorn"}  # the DAG files' framework; the CLI's progress bars and web server


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included), as absolute names."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            if node.module == "tasks":  # `from tasks import pipeline` imports tasks.pipeline
                names.update(f"tasks.{alias.name}" for alias in node.names)
    return names


def below_the_service_layer(name: str) -> bool:
    top = name.split(".")[0]
    if top in sys.stdlib_module_names or top in THIRD_PARTY or name in ("__future__", "tasks"):
        return False
    return not any(name == allowed or name.startswith(allowed + ".") for allowed in ALLOWED)


@pytest.mark.parametrize("path", FRONT_ENDS, ids=[f"{path.parent.name}/{path.name}" for path in FRONT_ENDS])
def test_the_front_ends_call_nothing_below_the_service_layer(path):
    offending = sorted(name for name in imported_modules(path) if below_the_service_layer(name))
    assert offending == [], f"{path.relative_to(REPO)} imports {offending}: go through tasks.pipeline"


def test_one_path_records_a_model_in_the_registry():
    """Training, `models register`, evaluation and the benchmarks register through pipeline.register_model."""
    callers = []
    for path in sorted([*(REPO / "tasks").rglob("*.py"), *(REPO / "dags").glob("*.py"),
                        *(REPO / "benchmarks").glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "register" and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "registry"):
                callers.append(str(path.relative_to(REPO)))
    assert callers == ["tasks/pipeline/models.py"]


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_import_cycle_among_the_tasks_modules():
    """Imports inside functions count too: a cycle there still ties two modules together."""
    modules = {module_name(path): path for path in (REPO / "tasks").rglob("*.py")}
    graph = {name: {imported for imported in imported_modules(path) if imported in modules and imported != name}
             for name, path in modules.items()}
    for name, path in modules.items():  # `from tasks.tag import s3` imports tasks.tag.s3
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in modules:
                graph[name].update(f"{node.module}.{alias.name}" for alias in node.names
                                   if f"{node.module}.{alias.name}" in modules)
    packages = {name for name, path in modules.items() if path.name == "__init__.py"}
    visiting, done, cycles = [], set(), []

    def visit(name: str) -> None:
        visiting.append(name)
        for target in sorted(graph[name] - packages):
            if target in visiting:
                cycles.append(visiting[visiting.index(target):] + [target])
            elif target not in done:
                visit(target)
        visiting.pop()
        done.add(name)

    for name in sorted(modules):
        if name not in done:
            visit(name)
    assert cycles == []


def snapshot(engine) -> dict[str, list]:
    """Every row of every table (and the table list itself): any write shows up as a difference."""
    inspector = sa.inspect(engine)
    with engine.connect() as connection:
        return {table: sorted(map(repr, connection.execute(sa.text(f'SELECT * FROM "{table}"'))))
                for table in sorted(inspector.get_table_names())}


def test_the_champion_lookup_writes_nothing(db_url, tmp_path):
    engine = db.engine(db_url)
    assert pipeline.champion_path("cifar10", db_url) == "bundled:cifar10"  # never migrated: the bundled model
    assert sa.inspect(engine).get_table_names() == []
    db.migrate(engine)
    before = snapshot(engine)
    assert pipeline.champion_path("cifar10", db_url) == "bundled:cifar10"  # migrated, no champion yet
    assert snapshot(engine) == before, "the lookup recorded something"
    assert pipeline.ensure_baseline(engine, "cifar10") != []  # the write path records the bundled model
    assert pipeline.ensure_baseline(engine, "cifar10") == []  # once
    recorded = snapshot(engine)
    assert recorded != before
    pipeline.champion_path("cifar10", db_url)
    pipeline.champion_path("cifar100", db_url)
    assert snapshot(engine) == recorded


def test_migrate_records_the_bundled_models_as_the_baseline_champions(db_url):
    from tasks.registry import registry

    where, applied, crowned = pipeline.migrate_database(db_url)
    assert applied and where.startswith(db_url.split(":")[0])
    assert len(crowned) == len(pipeline.DATASETS)
    engine = db.engine(db_url)
    for dataset in pipeline.DATASETS:
        (model,) = registry.list_models(engine, dataset)
        assert model.status == "champion" and model.model_id in crowned
        assert model.artifact_uri == pipeline.champion_path(dataset, db_url) == f"bundled:{dataset}"
    assert pipeline.migrate_database(db_url)[1:] == ([], [])
    assert len(registry.list_models(engine)) == len(pipeline.DATASETS)


# ------------------------------------------------------------------------------------------ one decoder

def picture(seed: int, size: tuple[int, int] = (96, 64)) -> np.ndarray:
    """A smooth RGB picture (gradients and a disc), so resizing filters differ where they can."""
    height, width = size[1], size[0]
    y, x = np.mgrid[0:height, 0:width]
    disc = ((x - width * 0.6) ** 2 + (y - height * 0.4) ** 2) < (min(width, height) * 0.3) ** 2
    pixels = np.stack([x * 255 // width, y * 255 // height, (disc * 200 + seed * 20) % 256], axis=-1)
    return pixels.astype(np.uint8)


def encoded(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    return buffer.getvalue()


def hard_files() -> dict[str, bytes]:
    """A JPEG, a PNG whose alpha hides part of the picture, and a JPEG that EXIF says to rotate."""
    jpeg = encoded(Image.fromarray(picture(0)), "JPEG", quality=90)
    rgba = np.dstack([picture(1), np.where(np.arange(96)[None, :] < 48, 0, 255).repeat(64, 0).astype(np.uint8)])
    png = encoded(Image.fromarray(rgba, "RGBA"), "PNG")
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to view
    rotated = encoded(Image.fromarray(picture(2)), "JPEG", quality=90, exif=exif.tobytes())
    return {"photo.jpg": jpeg, "transparent.png": png, "rotated.jpg": rotated}


def test_prepare_and_tag_make_identical_tiles(tmp_path, db_url):
    """The tiles a model trains on (prepare) and the ones it serves (tag) come from the same bytes alike."""
    from tasks.data import prepare
    from tasks.tag import predictor

    files = hard_files()
    tree = tmp_path / "tree"
    for index, (name, data) in enumerate(files.items()):
        (tree / "train" / f"class{index}").mkdir(parents=True)
        (tree / "train" / f"class{index}" / name).write_bytes(data)
    raw = prepare.read_image_tree(tree)
    assert raw.skipped == []
    prepared = {files_name: raw.x_train[index] for index, files_name in enumerate(files)}  # one per class

    model = predictor.load(predictor.bundled_model("cifar10"))
    served: list[np.ndarray] = []
    answer = model._run
    model._run = lambda batch: (served.extend(np.array(batch)), answer(batch))[1]  # see what the model is given
    db.migrate(db.engine(db_url))
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, data in sorted(files.items()):
        (photos / name).write_bytes(data)
    summary = pipeline.tag_source(str(photos), model, db_url, batch_size=8)
    assert summary.tagged == len(files)
    tagged = dict(zip(sorted(files), served))  # a folder is listed in name order
    for name in files:
        assert tagged[name].shape == prepared[name].shape == (32, 32, 3)
        np.testing.assert_array_equal(tagged[name], prepared[name], err_msg=name)
    # and the cases are the hard ones: alpha composed on white, the EXIF rotation applied
    assert (prepared["transparent.png"][:, :14] > 240).all()
    unrotated = np.asarray(Image.fromarray(picture(2)).resize((32, 32), Image.Resampling.LANCZOS))
    assert np.abs(prepared["rotated.jpg"].astype(int) - unrotated).mean() > 20


def test_no_test_module_imports_another_or_conftest():
    """Shared fixtures live in conftest.py (pytest finds them) or tests/fixtures/ helpers, never in test modules."""
    tests = REPO / "tests"
    modules = {path.stem for path in tests.rglob("test_*.py")} | {"conftest"}
    offending = {path.name: sorted(name for name in imported_modules(path) if name.split(".")[-1] in modules)
                 for path in sorted(tests.rglob("*.py"))}
    assert {name: found for name, found in offending.items() if found} == {}
