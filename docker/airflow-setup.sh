#!/usr/bin/env bash
# What the DAGs need in Airflow, created by the project: run it once before `airflow standalone` (and
# again after an upgrade: every step is idempotent). The compose file's airflow-init service does the
# same for the Docker cluster.
#
#   AIRFLOW_HOME=... docker/airflow-setup.sh
#
# 1. Airflow's metadata database (airflow db migrate).
# 2. The pool `training` (HASHTAGGER_TRAIN_POOL) that train_models' training tasks wait for, with
#    HASHTAGGER_TRAIN_SLOTS slots (default 1: one training at a time per GPU or CPU worker). Without it
#    those tasks stay "scheduled" with an empty log.
# 3. The results database's tables (hashtagger db migrate), when HASHTAGGER_DB_URL names a PostgreSQL one.
# 4. Connections, from the environment when given, stored in Airflow's database (AIRFLOW_CONN_*
#    variables work as well, without this step):
#      HASHTAGGER_DB_URL        -> postgres_default (results)
#      S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY -> aws_default (s3:// sources; the
#                                  endpoint only for MinIO or another S3-compatible server)
#      X_BEARER_TOKEN           -> x_api (optional: trending hashtags from X)
set -euo pipefail

airflow db migrate >/dev/null
pool="${HASHTAGGER_TRAIN_POOL:-training}"
airflow pools set "$pool" "${HASHTAGGER_TRAIN_SLOTS:-1}" "model training: one slot per GPU or training worker" >/dev/null
echo "pool $pool: ${HASHTAGGER_TRAIN_SLOTS:-1} slot(s)"

replace_connection() {  # NAME ARGS...: delete then add, so that a second run updates it
  airflow connections delete "$1" >/dev/null 2>&1 || true
  airflow connections add "$@" >/dev/null
  echo "connection $1 set"
}

if [[ "${HASHTAGGER_DB_URL:-}" == postgres* ]]; then
  hashtagger db migrate
  # Airflow's postgres connection takes the postgres:// scheme: drop a +driver suffix if there is one
  replace_connection postgres_default --conn-uri "postgres://${HASHTAGGER_DB_URL#*://}"
fi
if [[ -n "${AWS_ACCESS_KEY_ID:-}" ]]; then
  extra="{\"region_name\": \"${AWS_DEFAULT_REGION:-us-east-1}\"${S3_ENDPOINT_URL:+, \"endpoint_url\": \"$S3_ENDPOINT_URL\"}}"
  replace_connection aws_default --conn-type aws --conn-login "$AWS_ACCESS_KEY_ID" \
    --conn-password "${AWS_SECRET_ACCESS_KEY:?set AWS_SECRET_ACCESS_KEY with AWS_ACCESS_KEY_ID}" --conn-extra "$extra"
fi
if [[ -n "${X_BEARER_TOKEN:-}" ]]; then
  replace_connection x_api --conn-type generic --conn-password "$X_BEARER_TOKEN"
fi
echo "Airflow is ready for hashtagger: start it (airflow standalone), then unpause the DAGs you want"
