#!/usr/bin/env bash
# Local Airflow for this project in one command: scheduler, dag-processor, triggerer and API server/UI.
#
#   scripts/airflow-standalone.sh            # then open http://127.0.0.1:8080 and log in as admin
#
# - AIRFLOW_HOME=<project>/airflow_home (git-ignored): SQLite metadata DB, logs, airflow.cfg.
# - DAGs come from <project>/dags (sass_daily, derived from dvc.yaml); no example DAGs.
# - LocalExecutor on SQLite (what `airflow standalone` uses in Airflow 3; fine for one machine).
# - The API server listens on loopback only (127.0.0.1). Port: $AIRFLOW_PORT (default 8080).
# - Simple auth manager with one user, admin. Its password is generated on first start into
#   airflow_home/simple_auth_manager_passwords.json.generated (mode 600, git-ignored) and printed
#   below; it is never committed. Set SASS_AIRFLOW_PASSWORD to choose it on first start.
# Stop with Ctrl-C. Extra arguments are ignored; override any setting with AIRFLOW__SECTION__KEY.
set -euo pipefail

PROJECT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SASS_VENV:-$PROJECT_DIR/.venv}"
if [[ -z "${VIRTUAL_ENV:-}" && -f "$VENV/bin/activate" ]]; then
  # shellcheck disable=SC1091
  . "$VENV/bin/activate"
fi
command -v airflow >/dev/null || { echo "airflow not found: install the project (pip install -e .) or set SASS_VENV" >&2; exit 1; }

PORT="${AIRFLOW_PORT:-8080}"
export SASS_PROJECT_DIR="$PROJECT_DIR"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$PROJECT_DIR/airflow_home}"
export AIRFLOW__CORE__DAGS_FOLDER="$PROJECT_DIR/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-4}"
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-sqlite:///$AIRFLOW_HOME/airflow.db}"
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT="$PORT"
export AIRFLOW__API__BASE_URL="http://127.0.0.1:$PORT"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$PORT/execution/"
export AIRFLOW__CORE__AUTH_MANAGER=airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=False
export PYTHONPATH="$PROJECT_DIR/src:$PROJECT_DIR${PYTHONPATH:+:$PYTHONPATH}"

mkdir -p "$AIRFLOW_HOME"
PASSWORDS="$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
if [[ ! -s "$PASSWORDS" ]]; then
  umask 077
  SASS_AIRFLOW_PASSWORD="${SASS_AIRFLOW_PASSWORD:-}" python - "$PASSWORDS" <<'PY'
import json, os, secrets, sys
pw = os.environ.get("SASS_AIRFLOW_PASSWORD") or secrets.token_urlsafe(12)
with open(sys.argv[1], "w") as fh:
    json.dump({"admin": pw}, fh)
PY
fi
chmod 600 "$PASSWORDS"
PASSWORD="$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["admin"])' "$PASSWORDS")"

cat <<EOF
Airflow (standalone) for $PROJECT_DIR
  UI / API   http://127.0.0.1:$PORT   (loopback only)
  login      admin / $PASSWORD        (stored in $PASSWORDS)
  DAGs       $AIRFLOW__CORE__DAGS_FOLDER
  home       $AIRFLOW_HOME (SQLite, LocalExecutor)
Trigger one day:   airflow dags trigger sass_daily --conf '{"end_date": "20220505"}'
Backfill days:     airflow backfill create --dag-id sass_daily --from-date 2022-05-01 --to-date 2022-05-05
(run those in another shell after: export AIRFLOW_HOME=$AIRFLOW_HOME SASS_PROJECT_DIR=$PROJECT_DIR)
EOF

cd "$PROJECT_DIR"
# `airflow standalone` does not pass SIGTERM on to the api-server, scheduler, triggerer and workers it starts
# (they were left running as orphans): run it as its own process group and stop the whole group.
set -m
airflow standalone &
pid=$!
stop() { kill -TERM -- "-$pid" 2>/dev/null; sleep 10; kill -KILL -- "-$pid" 2>/dev/null; }
trap stop TERM INT
wait "$pid"
