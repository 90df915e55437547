"""The cluster's secrets: generated on this machine, kept in files only the owner can read (mode 600) in the
cluster's home, never in the repository.

Two lifetimes. What the data kept in the home depends on lasts as long as the home: PostgreSQL's passwords
(its data folder survives a restart) and the Fernet key (connections and variables in the database are
encrypted with it). Everything else is new at every start: the JWT secret every Airflow component signs and
checks task tokens with (one for all of them: the api-server rejects a token signed by another secret), the
api-server's secret key, Redis's password and the S3 keys (Redis and moto keep nothing between starts).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path

SECRETS_FILE = "cluster-secrets.json"
# Airflow's simple auth manager reads its users' passwords from this file in AIRFLOW_HOME
# (scripts/airflow-standalone.sh writes the same file).
PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"
ADMIN_USER = "admin"
PASSWORD_VARIABLE = "SASS_AIRFLOW_PASSWORD"


def _hex() -> str:
    return secrets.token_hex(16)   # safe inside a URL (database and broker URLs) without quoting


def _fernet_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def _token() -> str:
    return secrets.token_urlsafe(64)   # JWTs are signed with HS512: PyJWT warns below a 64-byte key


KEPT: dict[str, Callable[[], str]] = {
    "postgres_superuser_password": _hex,
    "postgres_airflow_password": _hex,
    "fernet_key": _fernet_key,
}
NEW_AT_START: dict[str, Callable[[], str]] = {
    "jwt_secret": _token,
    "api_secret_key": _token,
    "redis_password": _hex,
    "aws_access_key_id": lambda: "SASS" + secrets.token_hex(8).upper(),
    "aws_secret_access_key": _token,
}


def write_private(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` readable by its owner only: the file is created mode 600 (never readable by
    others, not even for a moment) and replaces the old one in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(text)
    os.replace(tmp, path)


def cluster_secrets(home: Path) -> dict[str, str]:
    """The secrets of this start: the kept ones read from ``<home>/cluster-secrets.json`` (made on the first
    start), the others new; the file is rewritten with all of them."""
    path = home / SECRETS_FILE
    old = json.loads(path.read_text()) if path.is_file() else {}
    out = {key: old.get(key) or make() for key, make in KEPT.items()}
    out.update({key: make() for key, make in NEW_AT_START.items()})
    write_private(path, json.dumps(out, indent=1))
    return out


def admin_password(home: Path) -> str:
    """The UI's ``admin`` password, in the simple auth manager's passwords file: ``$SASS_AIRFLOW_PASSWORD`` or
    a random one on the first start, the same one afterwards."""
    path = home / PASSWORDS_FILE
    if path.is_file():
        passwords = json.loads(path.read_text())
        if passwords.get(ADMIN_USER):
            os.chmod(path, 0o600)
            return passwords[ADMIN_USER]
    password = os.environ.get(PASSWORD_VARIABLE) or secrets.token_urlsafe(12)
    write_private(path, json.dumps({ADMIN_USER: password}))
    return password
