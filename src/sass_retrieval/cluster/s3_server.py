"""An S3-compatible server (moto's server mode) standing in for the DVC remote and the published-model store.

Workers of a real deployment share no disk, so what one stage writes and the next reads on another machine
goes through S3; the local cluster keeps that true by giving every component the same S3 settings. moto keeps
its buckets in memory: they last as long as the server. It accepts any keys; random ones are generated so
that nothing depends on a well-known pair. With ``SASS_DVC_REMOTE_URL`` set by the caller (a real S3) no
server is started.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .ports import LOOPBACK
from .processes import ManagedProcess, spawn, stop, wait_until

BUCKET = "sass-dvc"
REGION = "us-east-1"
REMOTE_URL = f"s3://{BUCKET}/remote"
PUBLISHED_URL = f"s3://{BUCKET}/published"
REMOTE_VARIABLE = "SASS_DVC_REMOTE_URL"


@dataclass
class S3Server:
    process: ManagedProcess
    port: int
    access_key: str
    secret_key: str

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to use this server as the project's S3: the DVC remote and published-model
        URLs, the endpoint and the keys."""
        return {
            REMOTE_VARIABLE: REMOTE_URL,
            "SASS_PUBLISHED_URL": PUBLISHED_URL,
            "SASS_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
        }

    def client(self):
        """A boto3 S3 client of this server."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name=REGION)

    def stop(self, grace: float = 10.0) -> None:
        stop([self.process], grace=grace)


def spawn_s3(home: Path, log: Path, port: int, *, access_key: str, secret_key: str, env: dict[str, str]) -> S3Server:
    """Starts moto's server (it needs a few seconds to import: :func:`wait_s3` waits for it)."""
    process = spawn("s3", [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)], log=log,
                    cwd=home, env=env)
    return S3Server(process, port, access_key, secret_key)


def wait_s3(server: S3Server, *, timeout: float = 60.0) -> None:
    """Waits until the server answers HTTP, then creates the bucket ``sass-dvc``."""

    def answers() -> bool:
        try:
            with urllib.request.urlopen(server.endpoint + "/moto-api/", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True        # any HTTP answer: the server is up
        except OSError:
            return False

    try:
        wait_until(answers, timeout=timeout, what=f"s3 (moto) on {server.endpoint}", watch=[server.process])
        server.client().create_bucket(Bucket=BUCKET)
    except BaseException:
        server.stop(grace=2)
        raise
