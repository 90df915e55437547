"""The Data Docs open without internet: every CDN file is copied next to them and linked locally.

Built once per module on a tiny synthetic project through the real ``ingest`` and ``validate`` stages
(which call ``offline_assets.localize``). The slow test opens the index in headless Chromium in a
network namespace with nothing to reach and checks the validation results are listed -- the table is
drawn by bootstrap-table, so with a CDN link left it would be empty.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from support import cwd, write_project

from sass_retrieval.data.offline_assets import (
    CDN_ASSETS,
    VENDOR_DIR,
    default_modules,
    external_resources,
    localize,
)
from sass_retrieval.data.validation import SUITE_NAMES

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "bench" / "screenshot_report.sh"
SCRIPT_SRC = re.compile(r"""<script\b[^>]*?\bsrc\s*=\s*["']([^"']+)["']""", re.I)
STYLESHEET = re.compile(r"""<link\b(?=[^>]*\brel\s*=\s*["']stylesheet["'])[^>]*?\bhref\s*=\s*["']([^"']+)["']""", re.I)

# the tests that copy files out of node_modules; the others run on pages they write themselves
needs_node_modules = pytest.mark.skipif(not default_modules().is_dir(), reason=f"{default_modules()} missing: "
                                        "run `make install` (npm ci in report-assets/)")


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipelines import ingest, validate

    root = write_project(tmp_path_factory.mktemp("offline") / "project")
    with cwd(root):
        assert ingest.main([]) == 0
        assert validate.main([]) == 0
    return root / "reports" / "validation" / "data_docs"


def pages(docs: Path) -> list[Path]:
    return sorted(p for p in docs.rglob("*.html") if (docs / VENDOR_DIR) not in p.parents)


@needs_node_modules
def test_no_page_loads_anything_from_the_network(docs: Path):
    assert len(pages(docs)) >= 1 + 2 * len(SUITE_NAMES)  # index, one suite page and one result per suite
    assert external_resources(docs) == []
    text = "".join(p.read_text() for p in pages(docs))
    assert not [u for u in CDN_ASSETS if u in text]
    assert "integrity=" not in text and "amazonaws.com" not in text


@needs_node_modules
def test_every_script_and_stylesheet_is_a_local_file(docs: Path):
    for page in pages(docs):
        text = page.read_text()
        refs = SCRIPT_SRC.findall(text) + STYLESHEET.findall(text)
        assert refs, page
        for ref in refs:
            assert not re.match(r"(https?:)?//", ref), (page, ref)
            assert (page.parent / ref).resolve().is_file(), (page, ref)
    # Font Awesome's stylesheet loads its fonts relative to itself
    fa = next((docs / VENDOR_DIR).glob("@fortawesome/fontawesome-free@*/"))
    assert (fa / "webfonts" / "fa-solid-900.woff2").is_file() and (fa / "LICENSE.txt").is_file()


@needs_node_modules
def test_localize_is_idempotent_and_reports_what_it_rewrote(docs: Path, tmp_path: Path):
    assert localize(docs) == []
    # on pages as GX wrote them it names every CDN file it replaced
    page = tmp_path / "index.html"
    page.write_text("".join(f'<script src="{u}"></script>\n' for u in CDN_ASSETS))
    assert localize(tmp_path) == sorted(CDN_ASSETS)
    assert external_resources(tmp_path) == []


def test_an_unknown_cdn_link_is_named_in_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    url = "https://cdn.example.invalid/new-lib@1/lib.min.js"
    (tmp_path / "index.html").write_text(f'<script src="{url}"></script><a href="https://example.invalid">x</a>')
    assert localize(tmp_path) == []
    assert [u for _, u in external_resources(tmp_path)] == [url]  # the <a href> is a link, not a resource
    assert any(url in r.getMessage() and "index.html" in r.getMessage() for r in caplog.records)


def test_without_node_modules_the_cdn_links_stay_and_the_warning_says_make_install(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    page = tmp_path / "docs" / "index.html"
    page.parent.mkdir()
    html = "".join(f'<script src="{u}"></script>\n' for u in CDN_ASSETS)
    page.write_text(html)
    assert localize(page.parent, modules=tmp_path / "absent") == []
    assert page.read_text() == html and not (page.parent / VENDOR_DIR).exists()
    assert sorted(u for _, u in external_resources(page.parent)) == sorted(CDN_ASSETS)
    assert any("make install" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
@needs_node_modules
def test_index_lists_the_validation_results_in_chromium_offline(docs: Path):
    if not shutil.which("chromium") and not shutil.which("chromium-browser") and not shutil.which("google-chrome"):
        pytest.skip("no Chromium (apt-get install -y chromium)")
    dom = subprocess.run(["bash", str(SCREENSHOT), str(docs / "index.html"), "-"], capture_output=True,
                         text=True, timeout=180, check=True).stdout
    rows = re.findall(r'<tr[^>]*data-href="validations/([^/"]+)/', dom)
    assert sorted(rows) == sorted(SUITE_NAMES), dom[:2000]
    # Font Awesome's success icons and Bootstrap's table classes made it into the rendered table
    assert "fa-check-circle" in dom and 'class="bootstrap-table bootstrap4"' in dom
