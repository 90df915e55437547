"""The quick start's expected values (tests/expected/quickstart.yaml) and the check of a run against them:
the comparison on small fake numbers, the file against the rows the default run scores, and (slow) a fresh
`dvc repro` of the default in a copy of the project, every row within tolerance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import load_bench, load_script

ROOT = Path(__file__).resolve().parents[2]


def _quickstart():
    return load_bench("quickstart")


def _check_script():
    return load_script("check_expected")


EXPECTED = {"sass": {"ndcg@50": {"expected": 0.30, "tolerance": 0.01}, "hit_rate@50": {"expected": 0.6, "tolerance": 0.02}},
            "popular": {"ndcg@50": {"expected": 0.20, "tolerance": 0.001}}}


def test_compare_names_every_value_outside_its_tolerance_missing_or_unexpected() -> None:
    compare = _quickstart().compare
    assert compare({"sass": {"ndcg@50": 0.309, "hit_rate@50": 0.585}, "popular": {"ndcg@50": 0.2005}}, EXPECTED) == []
    problems = compare({"sass": {"ndcg@50": 0.311}, "popular": {"ndcg@50": 0.1985}, "ctnet": {"ndcg@50": 0.4}},
                       EXPECTED)
    assert any(p.startswith("sass ndcg@50: 0.3110, expected 0.3000 ± 0.0100") for p in problems)
    assert any(p.startswith("sass hit_rate@50: not in the run's metrics") for p in problems)
    assert any(p.startswith("popular ndcg@50: 0.1985") for p in problems)
    assert "ctnet: scored by the run, not in the expected values" in problems and len(problems) == 4


def test_expected_values_from_a_spread_cover_every_seed() -> None:
    """Expected = the mean, tolerance = the spread rounded up: each seed's value is inside; a row no seed moves
    still gets a small margin."""
    qs = _quickstart()
    per_seed = [{"sass": {"ndcg@50": v, "hit_rate@50": 0.5}} for v in (0.30004, 0.31236, 0.29851)]
    stats = qs.spread(per_seed)
    assert stats["sass"]["ndcg@50"]["spread"] == pytest.approx(0.31236 - 0.29851)
    expected = qs.expected_values(stats)
    assert expected["sass"]["hit_rate@50"] == {"expected": 0.5, "tolerance": qs.MIN_TOLERANCE + 0.0001}
    assert all(qs.compare(h, expected) == [] for h in per_seed)
    assert qs.compare({"sass": {"ndcg@50": 0.33, "hit_rate@50": 0.5}}, expected) != []


def test_the_script_exits_1_on_a_miss_and_0_when_every_row_agrees(tmp_path: Path, capsys) -> None:
    import yaml

    (tmp_path / "expected.yaml").write_text(yaml.safe_dump({"rows": EXPECTED}))

    def metrics(sass: float) -> Path:
        rows = {"sass": {"macro": {"ndcg@50": sass, "hit_rate@50": 0.6}},
                "popular": {"macro": {"ndcg@50": 0.2, "hit_rate@50": 0.4}}}
        path = tmp_path / f"m{sass}.json"
        path.write_text(json.dumps({"rows": rows}))
        return path

    check = _check_script().main
    assert check([str(metrics(0.305)), "--expected", str(tmp_path / "expected.yaml")]) == 0
    assert check([str(metrics(0.35)), "--expected", str(tmp_path / "expected.yaml")]) == 1
    assert "FAIL sass" in capsys.readouterr().out
    assert check([str(tmp_path / "absent.json"), "--expected", str(tmp_path / "expected.yaml")]) == 2


def test_the_file_expects_exactly_the_rows_the_default_run_scores() -> None:
    """evaluate.rows plus the challenger (benchmark rows are off by default), each with both metrics."""
    from sass_retrieval.config import load_params

    qs = _quickstart()
    params = load_params(ROOT / "params.yaml")
    expected = qs.load_expected()
    rows = set(params.evaluate.rows) | {params.publish.challenger} | set(params.evaluate.benchmark_rows)
    assert set(expected) == rows
    for row, by_metric in expected.items():
        assert set(by_metric) == set(qs.METRICS), row
        assert all(0.0 < e["expected"] < 1.0 and 0.0 < e["tolerance"] < 0.05 for e in by_metric.values()), row


@pytest.mark.slow
def test_a_fresh_default_run_matches_the_expected_values(tmp_path: Path) -> None:
    """`dvc repro` of params.yaml as shipped, in a copy of the project: every row's macro NDCG@50 and HitRate@50
    within tolerance of tests/expected/quickstart.yaml."""
    qs = _quickstart()
    metrics = qs.run_default(tmp_path / "project", log=tmp_path / "dvc.log")
    problems = qs.compare(qs.headline(metrics), qs.load_expected())
    assert problems == [], "\n".join(problems)
