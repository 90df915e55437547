#!/usr/bin/env bash
# Local multi-worker Airflow for this project in one command: CeleryExecutor with N Celery workers, a Redis
# broker, a PostgreSQL metadata database and an S3 stand-in (moto) for the DVC remote, all on 127.0.0.1.
#
#   scripts/airflow-cluster.sh --workers 2     # then open http://127.0.0.1:8080 and log in as admin
#
# Needs redis-server and PostgreSQL's server (apt-get install -y redis-server postgresql). Everything is
# src/sass_retrieval/cluster (python -m sass_retrieval.cluster --help for the options):
# - AIRFLOW_HOME=<project>/airflow_home/cluster (git-ignored): logs/<component>.log, workers/w<i> (each
#   worker's working folder), the database's data; secrets generated on this machine, mode 600.
# - Port: --port or $AIRFLOW_PORT (default 8080). Admin password: generated on first start (or
#   $SASS_AIRFLOW_PASSWORD) and printed below.
# - AIRFLOW__SECTION__KEY variables override the cluster's settings; SASS_DVC_REMOTE_URL set: a real S3.
# Stop with Ctrl-C (or SIGTERM): every process started is stopped with its process group.
set -euo pipefail

PROJECT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SASS_VENV:-$PROJECT_DIR/.venv}"
if [[ -z "${VIRTUAL_ENV:-}" && -f "$VENV/bin/activate" ]]; then
  # shellcheck disable=SC1091
  . "$VENV/bin/activate"
fi
command -v python >/dev/null || { echo "python not found: install the project (make install) or set SASS_VENV" >&2; exit 1; }

export SASS_PROJECT_DIR="$PROJECT_DIR"
cd "$PROJECT_DIR"
exec python -m sass_retrieval.cluster "$@"
