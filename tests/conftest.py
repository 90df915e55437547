"""Shared fixtures: a tiny synthetic project (store + split features) built once per session; and, under
``SASS_CI=1`` (.ci/run), no silent skips.

A test skips locally when a prerequisite is missing (Chromium, report-assets/node_modules, ../shared's
KuaiRand data, the ``[bench]`` extra): a developer's machine may lack them. CI installs all of them, so there a
skip means the installation is broken and the test did not run, which a green run must not hide: the hooks
below turn it into a failure. A skip that states a fact of the data a test was given rather than a missing
prerequisite stays a skip; :data:`NOT_PREREQUISITES` lists those, by their reason.
"""

from __future__ import annotations

import os

import pytest
from support import TINY_SCENARIOS, run_pipeline, tiny_params, write_features, write_project

from sass_retrieval.config import make_window
from sass_retrieval.data.store import read_items, read_users
from sass_retrieval.data.synthetic import SyntheticConfig, generate

CI_FLAG = "SASS_CI"
# Skip reasons (a fragment of each) that are about the data, not about the machine: CI keeps them skips.
NOT_PREREQUISITES = (
    # tests/serve/test_app.py: the tiny project may give every known user behaviour in every scenario
    "every known user has behaviour in every scenario",
)


def strict_prerequisites() -> bool:
    """True under CI: a missing prerequisite fails its test."""
    return os.environ.get(CI_FLAG, "") not in ("", "0")


def _skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    return str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


def _fail_prerequisite_skip(report: pytest.CollectReport | pytest.TestReport) -> None:
    if not report.skipped or hasattr(report, "wasxfail") or not strict_prerequisites():
        return
    reason = _skip_reason(report)
    if any(fragment in reason for fragment in NOT_PREREQUISITES):
        return
    report.outcome = "failed"
    report.longrepr = (f"{CI_FLAG}=1: a missing prerequisite fails instead of skipping (.ci/run installs every "
                       f"one): {reason}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A test's skip (a skipif mark, or pytest.skip in the test or a fixture)."""
    outcome = yield
    _fail_prerequisite_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    """A whole module's skip at import (``pytest.importorskip``): a collection error under CI."""
    outcome = yield
    _fail_prerequisite_skip(outcome.get_result())


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("tiny")
    cfg = SyntheticConfig(seed=3, users=300, items=150, scenarios=tuple(TINY_SCENARIOS), days=5, rows=8_000,
                          chunk_rows=4_000, start_date=20220425)
    generate(root / "store", cfg, progress=False)
    window = make_window(cfg.dates[-1], train_days=3, test_days=2)
    write_features(root / "store", root / "features", window, TINY_SCENARIOS)
    return {"root": root, "store": root / "store", "features": root / "features", "window": window,
            "scenarios": TINY_SCENARIOS}


@pytest.fixture(scope="session")
def tiny_bank(tiny_project: dict):
    from sass_retrieval.models.bank import load_bank, model_config

    cfg = model_config(tiny_params({"model": {"user_buckets": 1009, "video_buckets": 1009, "field_buckets": 97,
                                              "hidden": 16, "emb_dim": 8, "field_dim": 4}}), TINY_SCENARIOS)
    bank = load_bank(tiny_project["features"], read_users(tiny_project["store"]), read_items(tiny_project["store"]), cfg)
    return bank, cfg



@pytest.fixture(scope="session")
def built_project(tmp_path_factory: pytest.TempPathFactory):
    """A tiny project folder after every stage up to evaluate; tests copy it before changing it."""
    root = write_project(tmp_path_factory.mktemp("built") / "project")
    run_pipeline(root)
    return root
