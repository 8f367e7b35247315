"""docker/: the compose file's structure and the images it builds (no Docker engine here, so no `up`)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"
AIRFLOW_SERVICES = ("airflow-init", "api-server", "scheduler", "dag-processor", "triggerer", "worker-cpu",
                    "worker-gpu")
LONG_RUNNING = ("api-server", "scheduler", "dag-processor", "triggerer", "worker-cpu", "worker-gpu")


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((DOCKER / "docker-compose.yaml").read_text())


@pytest.fixture(scope="module")
def services(compose):
    return compose["services"]


def command_words(service: dict) -> list[str]:
    command = service.get("command", "")
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def test_every_service_is_there(services):
    assert set(services) >= {"postgres", "redis", "minio", "minio-init", *AIRFLOW_SERVICES}


def test_infrastructure_has_healthchecks(services):
    for name in ("postgres", "redis", "minio", *LONG_RUNNING):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_airflow_services_wait_for_healthy_infrastructure_and_the_init(services):
    for name in LONG_RUNNING:
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert depends["airflow-init"]["condition"] == "service_completed_successfully", name
    for worker in ("worker-cpu", "worker-gpu"):
        assert services[worker]["depends_on"]["api-server"]["condition"] == "service_healthy"
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"


def test_init_migrates_both_databases_and_sets_connections_and_the_pool(services):
    script = "\n".join(command_words(services["airflow-init"]))
    for step in ("airflow db migrate", "hashtagger db migrate", "airflow pools set training",
                 "connections add postgres_default", "connections add aws_default", "connections add x_api"):
        assert step in script, step
    assert services["airflow-init"]["restart"] == "no"


def test_the_bucket_nightly_tagging_reads_is_created(services):
    script = "\n".join(command_words(services["minio-init"]))
    source = services["scheduler"]["environment"]["HASHTAGGER_SOURCE"]
    bucket = re.fullmatch(r"\$\{HASHTAGGER_SOURCE:-s3://([^/]+)/.*\}", source).group(1)
    assert f"mc mb --ignore-existing local/{bucket}" in script
    dag = (DOCKER.parent / "dags" / "nightly_tagging.py").read_text()
    assert f'"HASHTAGGER_SOURCE", "s3://{bucket}/' in dag  # the DAG's own default names the same bucket


def test_workers_serve_their_queues(services):
    cpu, gpu = command_words(services["worker-cpu"]), command_words(services["worker-gpu"])
    assert cpu[:2] == ["celery", "worker"] and cpu[cpu.index("--queues") + 1] == "default"
    assert gpu[:2] == ["celery", "worker"] and gpu[gpu.index("--queues") + 1] == "gpu"
    assert gpu[gpu.index("--concurrency") + 1] == "1"


def test_gpu_worker_reserves_a_gpu(services):
    devices = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(device["driver"] == "nvidia" and "gpu" in device["capabilities"] for device in devices)
    assert "deploy" not in services["worker-cpu"]


def test_celery_cluster_configuration_is_shared(services):
    for name in AIRFLOW_SERVICES:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:6379/"), name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql"), name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://api-server:8080/execution/", name
        assert "AIRFLOW__API_AUTH__JWT_SECRET" in env and "AIRFLOW__CORE__FERNET_KEY" in env, name
        assert env["HASHTAGGER_TRAIN_QUEUE"].startswith("${HASHTAGGER_TRAIN_QUEUE:-gpu}"), name


def test_models_and_datasets_travel_through_minio_not_a_shared_volume(compose, services):
    assert "hashtagger-home" not in compose["volumes"]
    script = "\n".join(command_words(services["minio-init"]))
    for name in ("worker-cpu", "worker-gpu", "scheduler", "airflow-init"):
        env = services[name]["environment"]
        assert not any(volume.startswith("hashtagger-home:") for volume in services[name]["volumes"]), name
        bucket = re.fullmatch(r"\$\{HASHTAGGER_ARTIFACTS:-s3://([^/]+)/.*\}", env["HASHTAGGER_ARTIFACTS"]).group(1)
        assert f"mc mb --ignore-existing local/{bucket}" in script, name
        assert env["AWS_ENDPOINT_URL"].endswith("http://minio:9000}"), name
    assert services["airflow-init"]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    assert any(volume.startswith("postgres-data:") for volume in services["postgres"]["volumes"])
    assert any(volume.startswith("minio-data:") for volume in services["minio"]["volumes"])


def test_images_are_built_from_targets_of_the_dockerfile(services):
    dockerfile = (DOCKER / "Dockerfile").read_text()
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, flags=re.M))
    assert targets == {"airflow", "worker-cpu", "worker-gpu"}
    for name in AIRFLOW_SERVICES:
        build = services[name]["build"]
        assert build["target"] in targets and build["dockerfile"] == "docker/Dockerfile", name
        assert (DOCKER / build["context"]).resolve() == DOCKER.parent
    assert services["worker-gpu"]["build"]["target"] == "worker-gpu"
    assert services["worker-cpu"]["build"]["target"] == "worker-cpu"


def test_build_arguments_are_declared_in_each_stage_that_uses_them():
    """An ARG before the first FROM is out of scope inside a stage until the stage declares it again."""
    stages = re.split(r"^FROM ", (DOCKER / "Dockerfile").read_text(), flags=re.M)[1:]
    for stage in stages:
        name, body = stage.split("\n", 1)
        for argument in set(re.findall(r"\$\{(\w+)\}", body)):
            assert re.search(rf"^ARG {argument}\b", body, flags=re.M), f"stage {name} uses {argument} undeclared"


def test_only_the_gpu_image_gets_tensorflow():
    lean = (DOCKER / "requirements-lean.txt").read_text().lower()
    gpu = (DOCKER / "requirements-gpu.txt").read_text().lower()
    assert "tensorflow" not in re.sub(r"#.*", "", lean) and "onnxruntime" in lean
    assert "tensorflow" in gpu
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert "--no-deps" in dockerfile  # the project's own requirements list TensorFlow
    assert dockerfile.index("requirements-gpu.txt") > dockerfile.index("AS worker-gpu")


def test_files_the_compose_file_mounts_exist(services):
    for volume in services["postgres"]["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("."):
            assert (DOCKER / source).exists(), source
    assert (DOCKER / ".env.example").exists() and (DOCKER / "README.md").exists()


def test_no_default_passwords_and_ports_stay_on_this_machine(services):
    """Compose refuses to start without the secrets; published ports bind to 127.0.0.1 unless
    HASHTAGGER_BIND says otherwise; PostgreSQL is published beside, not over, a local server."""
    text = (DOCKER / "docker-compose.yaml").read_text()
    for secret in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "AIRFLOW_ADMIN_PASSWORD", "AIRFLOW_JWT_SECRET",
                   "AIRFLOW_API_SECRET_KEY", "AIRFLOW_FERNET_KEY"):
        uses = re.findall(rf"\$\{{{secret}(:?[-?])", text)
        assert uses and set(uses) == {":?"}, f"{secret} must be required (${{{secret}:?...}}), not defaulted"
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("${HASHTAGGER_BIND:-127.0.0.1}:"), f"{name} publishes {port} on every interface"
    (postgres,) = services["postgres"]["ports"]
    assert postgres.endswith(":${HASHTAGGER_POSTGRES_PORT:-15432}:5432")
    example = (DOCKER / ".env.example").read_text()
    for secret in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "AIRFLOW_ADMIN_PASSWORD"):
        assert re.search(rf"^{secret}=$", example, flags=re.M), f"docker/.env.example must not ship a {secret}"


def test_secrets_and_the_build_context_are_kept_out():
    root = DOCKER.parent
    assert "docker/.env" in (root / ".gitignore").read_text().split()
    ignored = (root / ".dockerignore").read_text().split()
    for heavy in (".venv", ".git", "datasets", "docker/.env"):
        assert heavy in ignored, heavy


def test_the_standalone_setup_creates_the_pool_train_models_waits_for():
    """docker/airflow-setup.sh (run before `airflow standalone`) sets the pool the training tasks use."""
    script = (DOCKER / "airflow-setup.sh").read_text()
    dag = (DOCKER.parent / "dags" / "train_models.py").read_text()
    default_pool = re.search(r'"HASHTAGGER_TRAIN_POOL", "(\w+)"', dag).group(1)
    assert 'pool="${HASHTAGGER_TRAIN_POOL:-' + default_pool + '}"' in script
    assert 'airflow pools set "$pool"' in script and "airflow db migrate" in script
    readme = (DOCKER.parent / "README.md").read_text()
    assert readme.index("docker/airflow-setup.sh") < readme.index("airflow standalone  ")
    assert "airflow dags unpause" in readme
