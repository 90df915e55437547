"""bench/screenshot_report.sh: refuses a missing report or browser with one line; with Chromium, screenshots
a page offline."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "screenshot_report.sh"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _run(*args: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": path} if path is not None else None
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120)


def test_a_missing_report_stops_with_its_name(tmp_path: Path) -> None:
    res = _run(str(tmp_path / "absent.html"), str(tmp_path / "out.png"))
    assert res.returncode == 1 and "no such report" in res.stderr and not (tmp_path / "out.png").exists()


def test_no_browser_stops_with_the_package_to_install(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text("<html><body>hi</body></html>")
    bins = tmp_path / "bin"          # a PATH with the shell's tools and no browser
    bins.mkdir()
    for tool in ("bash", "dirname", "mkdir", "realpath", "mktemp", "rm", "unshare", "true"):
        if found := shutil.which(tool):
            (bins / tool).symlink_to(found)
    res = _run(str(tmp_path / "page.html"), str(tmp_path / "out.png"), path=str(bins))
    assert res.returncode == 1 and "chromium not found" in res.stderr


@pytest.mark.skipif(not any(shutil.which(b) for b in BROWSERS), reason="no Chromium (apt-get install -y chromium)")
def test_screenshot_of_a_small_page(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text("<html><body><h1>report</h1></body></html>")
    res = _run(str(tmp_path / "page.html"), str(tmp_path / "shot.png"), "400x300")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "shot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
