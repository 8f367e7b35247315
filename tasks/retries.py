"""Which failures of a DAG task are worth a retry: the Airflow side of tasks.errors.is_permanent.

Airflow retries every failed task (`retries` in default_args); a missing source or a bad parameter
would then fail three times over minutes. `fail_fast()` wraps a task body so that such errors fail
the task at once with AirflowFailException (no retries) and one readable line, while an unreachable
database or S3 endpoint still raises as before and is retried.
"""

from __future__ import annotations

import contextlib

from tasks import errors


@contextlib.contextmanager
def fail_fast():
    """Run the body; a permanent error (tasks.errors.is_permanent) becomes AirflowFailException."""
    try:
        yield
    except Exception as error:
        if not errors.is_permanent(error):
            raise
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"{errors.first_line(error)} (not retried: retrying cannot fix this)") from error
