"""Make the Great Expectations Data Docs open without internet.

GX 1.x writes Data Docs whose pages load Bootstrap, jQuery, Popper, bootstrap-table, a date
picker, a dark theme, Font Awesome and Vega from public CDNs (and its logo from S3). Opened
offline -- a locked-down cluster, a CI artifact -- the index lists no validation at all (the table
is drawn by bootstrap-table) and every page is unstyled.

:func:`localize` fixes a built site in place: it copies each file a page links to from the npm
packages installed by ``make install`` (``report-assets/``: exact versions in ``package.json``,
hashes in ``package-lock.json``) to ``static/vendor/<package>@<version>/`` next to the pages, and
rewrites every CDN link to the relative local path. The copies are what the CDN serves: Popper
and Bootstrap's JS are checked against the SRI hashes GX writes before their ``integrity``
attributes are dropped (a ``file://`` page cannot make the CORS request SRI needs).

Nothing here downloads anything at run time. When the packages are missing (a bare ``pip
install``), or a GX upgrade links a CDN file this table does not know, the pages stay as GX wrote
them and :func:`localize` logs one warning per external URL left; ``tests/data/test_offline_assets.py``
turns either case into a failing test.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ASSETS_ENV = "SASS_REPORT_ASSETS"  # overrides where the npm packages are (a node_modules folder)
VENDOR_DIR = "static/vendor"
# GX's own copy of its logo: its wheel ships static/images/logo-long.png, the S3 bucket is the only
# source of the dark-mode variant (full_logo_dark.png), which is on no package registry.
GX_LOGO = "static/images/logo-long.png"
GX_IMAGES = re.compile(
    r"https://great-expectations-web-assets\.s3\.[a-z0-9-]+\.amazonaws\.com/"
    r"(?:logo-long|full_logo_dark)\.png(?:\?[^\"')\s]*)?")


@dataclass(frozen=True)
class Asset:
    """One CDN file and where the same file lies in an installed npm package."""

    package: str
    version: str
    file: str
    extra: tuple[str, ...] = ()  # folders the file itself loads (relative to the package)

    def folder(self) -> str:
        """The package's folder under the docs root."""
        return f"{VENDOR_DIR}/{self.package}@{self.version}"

    def local(self) -> str:
        """The file's path under the docs root."""
        return f"{self.folder()}/{self.file}"


_BT = "bootstrap-table", "1.19.1"
_FILTER_CSS = Asset(*_BT, "dist/extensions/filter-control/bootstrap-table-filter-control.min.css")

# Every CDN URL GX 1.x (checked on 1.24) puts in a <script src> or <link href>. GX names only the
# major version of the three Vega packages; package.json pins the newest of each major.
CDN_ASSETS: dict[str, Asset] = {
    "https://code.jquery.com/jquery-3.7.1.min.js": Asset("jquery", "3.7.1", "dist/jquery.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js":
        Asset("popper.js", "1.12.9", "dist/umd/popper.min.js"),
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css":
        Asset("bootstrap", "4.3.1", "dist/css/bootstrap.min.css"),
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js":
        Asset("bootstrap", "4.3.1", "dist/js/bootstrap.min.js"),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": Asset(*_BT, "dist/bootstrap-table.min.css"),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": Asset(*_BT, "dist/bootstrap-table.min.js"),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        Asset(*_BT, "dist/extensions/filter-control/bootstrap-table-filter-control.min.js"),
    # GX links the filter-control stylesheet of 1.19.0 next to the 1.19.1 scripts: the 1.19.1
    # stylesheet is the one that matches the code that runs.
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        _FILTER_CSS,
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        _FILTER_CSS,
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        Asset("bootstrap-datepicker", "1.9.0", "dist/css/bootstrap-datepicker.min.css"),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        Asset("bootstrap-datepicker", "1.9.0", "dist/js/bootstrap-datepicker.min.js"),
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css":
        Asset("@forevolve/bootstrap-dark", "1.1.0", "dist/css/bootstrap-prefers-dark.css"),
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css":
        Asset("@fortawesome/fontawesome-free", "6.6.0", "css/all.min.css", extra=("webfonts",)),
    "https://cdn.jsdelivr.net/npm/vega@5": Asset("vega", "5.33.1", "build/vega.min.js"),
    "https://cdn.jsdelivr.net/npm/vega-lite@5": Asset("vega-lite", "5.23.0", "build/vega-lite.min.js"),
    "https://cdn.jsdelivr.net/npm/vega-embed@6": Asset("vega-embed", "6.29.0", "build/vega-embed.min.js"),
}

# Tags that load a resource; <a href> is a link a reader may follow, not something a page needs.
_TAG = re.compile(r"<(?:script|link|img|source)\b[^>]*>", re.I)
_TAG_URL = re.compile(r"""\b(?:src|href|srcset)\s*=\s*(["'])((?:https?:)?//[^"']*)\1""", re.I)
_CSS_URL = re.compile(r"""(?:url\(\s*["']?|@import\s+["'])((?:https?:)?//[^"')\s]+)""", re.I)
_SRI = re.compile(r"""\s(?:integrity|crossorigin)(?:\s*=\s*(["'])[^"']*\1)?""", re.I)
_INTEGRITY = re.compile(r"""\bintegrity\s*=\s*["']([^"']+)["']""", re.I)


class AssetError(RuntimeError):
    """An installed package does not hold the file (or version, or hash) a page was written against."""


def default_modules() -> Path:
    """``$SASS_REPORT_ASSETS``, else the repository's ``report-assets/node_modules`` (``make install``)."""
    env = os.environ.get(ASSETS_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[3] / "report-assets" / "node_modules"


def external_resources(html_dir: Path) -> list[tuple[Path, str]]:
    """(file, url) of every resource a page or stylesheet under ``html_dir`` would fetch from the network."""
    found = []
    for path in _pages(html_dir):
        text = path.read_text(encoding="utf-8")
        urls = [m.group(2) for tag in _TAG.findall(text) for m in _TAG_URL.finditer(tag)]
        urls += _CSS_URL.findall(text)
        found += [(path, u) for u in dict.fromkeys(urls)]
    return found


def localize(html_dir: Path, modules: Path | None = None) -> list[str]:
    """Copy the CDN files the pages under ``html_dir`` use next to them and point the pages there.

    Returns the external URLs rewritten (each once). Idempotent. Logs a one-line warning per
    external resource URL that is still there afterwards.
    """
    html_dir, modules = Path(html_dir), Path(modules) if modules else default_modules()
    rewritten: set[str] = set()
    if modules.is_dir():
        copied: set[Asset] = set()
        for path in _pages(html_dir):
            text = path.read_text(encoding="utf-8")
            new = _rewrite(text, path.parent, html_dir, modules, copied, rewritten)
            if new != text:
                path.write_text(new, encoding="utf-8")
    else:
        log.warning("Data Docs keep their CDN links: %s not found (run `make install`)", modules)
    for path, url in external_resources(html_dir):
        log.warning("Data Docs need the network: %s loads %s", path.relative_to(html_dir), url)
    return sorted(rewritten)


def _pages(html_dir: Path) -> list[Path]:
    vendor = html_dir / VENDOR_DIR
    return sorted(p for p in html_dir.rglob("*") if p.suffix in (".html", ".css")
                  and p.is_file() and vendor not in p.parents)


def _rewrite(text: str, page_dir: Path, root: Path, modules: Path, copied: set[Asset],
             rewritten: set[str]) -> str:
    def rel(target: str) -> str:
        return Path(os.path.relpath(root / target, page_dir)).as_posix()

    def tag(m: re.Match) -> str:
        t = m.group(0)
        url_m = _TAG_URL.search(t)
        url = url_m.group(2) if url_m else ""
        asset = CDN_ASSETS.get(url)
        if asset is None:
            return t
        src = _install(asset, modules, root, copied)
        sri = _INTEGRITY.search(t)
        if sri and not _matches_sri(src, sri.group(1)):
            raise AssetError(f"{src} differs from the file {url} is pinned to ({sri.group(1)})")
        rewritten.add(url)
        t = _SRI.sub("", t) if sri else t
        return t.replace(url, rel(asset.local()))

    def image(m: re.Match) -> str:
        if not (root / GX_LOGO).is_file():
            return m.group(0)
        rewritten.add(m.group(0).split("?", 1)[0])
        return rel(GX_LOGO)

    return GX_IMAGES.sub(image, _TAG.sub(tag, text))


def _install(asset: Asset, modules: Path, root: Path, copied: set[Asset]) -> Path:
    """Copy one asset (with its license and package.json) out of node_modules; returns the source file."""
    pkg = modules / asset.package
    src = pkg / asset.file
    if asset in copied:
        return src
    meta = json.loads((pkg / "package.json").read_text()) if (pkg / "package.json").is_file() else {}
    if meta.get("version") != asset.version or not src.is_file():
        raise AssetError(f"{pkg}: need {asset.package}@{asset.version} with {asset.file}, found "
                         f"version {meta.get('version')!r} (run `make install`)")
    dest_pkg = root / asset.folder()
    for name in [asset.file, *asset.extra, "package.json", *(p.name for p in pkg.glob("LICENSE*"))]:
        s, d = pkg / name, dest_pkg / name
        d.parent.mkdir(parents=True, exist_ok=True)
        if s.is_dir():
            shutil.copytree(s, d, dirs_exist_ok=True)
        else:
            shutil.copyfile(s, d)
    copied.add(asset)
    return src


def _matches_sri(path: Path, integrity: str) -> bool:
    """True when one of the ``sha256/384/512-<base64>`` hashes of an SRI attribute is the file's."""
    data = path.read_bytes()
    for token in integrity.split():
        algo, _, digest = token.partition("-")
        if algo in ("sha256", "sha384", "sha512") and \
                base64.b64encode(hashlib.new(algo, data).digest()).decode() == digest:
            return True
    return False
