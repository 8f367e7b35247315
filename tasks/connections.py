"""Airflow connections -> the plain arguments the pipeline's functions take (a URL, S3 settings, a token).

Only DAG tasks call these, on the workers. It is installed with the package rather than kept in dags/:
Airflow 3 no longer puts the DAG folder on sys.path (airflow.settings adds only config/ and plugins/),
so a module beside the DAGs would not import on a worker. Airflow is imported inside each function, so
it imports and tests without Airflow.
"""

from __future__ import annotations


def results_db_url(conn_id: str = "postgres_default") -> str:
    """SQLAlchemy URL of the results database, from a Postgres connection."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return PostgresHook(postgres_conn_id=conn_id).sqlalchemy_url.render_as_string(hide_password=False)


def s3_settings(source: str, conn_id: str = "aws_default"):
    """Endpoint and credentials of an AWS connection for boto3, or None for a folder source."""
    if not source.startswith("s3://"):
        return None
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from tasks.pipeline import S3Settings

    hook = S3Hook(aws_conn_id=conn_id)
    credentials = hook.get_credentials()
    return S3Settings(endpoint_url=hook.conn_config.get_service_endpoint_url("s3"),
                      access_key_id=credentials.access_key, secret_access_key=credentials.secret_key,
                      session_token=credentials.token, region=hook.region_name)


def x_bearer_token(conn_id: str = "x_api") -> str | None:
    """The X bearer token kept as the connection's password; None when there is no such connection."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(conn_id).password or None
    except AirflowNotFoundException:
        return None
