from __future__ import annotations

import pytest

from sass_retrieval.rerank.measure import click_at, dominance, front, spearman


def test_spearman() -> None:
    assert spearman([0, 1, 2, 3], [1, 2, 4, 8]) == pytest.approx(1.0)
    assert spearman([0, 1, 2, 3], [3, 2, 1, 0]) == pytest.approx(-1.0)
    assert spearman([0, 1, 2], [5, 5, 5]) == 0.0


def test_front_keeps_only_undominated_points_and_interpolates() -> None:
    f = front([(0.5, 0.10), (0.6, 0.09), (0.55, 0.08), (0.8, 0.05)])
    assert f == [(0.5, 0.10), (0.6, 0.09), (0.8, 0.05)]
    assert click_at(f, 0.7) == pytest.approx(0.07)
    assert click_at(f, 0.4) == pytest.approx(0.10)
    assert click_at(f, 0.9) is None


def test_dominance_per_rule_point() -> None:
    d = dominance([(0.5, 0.10), (0.8, 0.05)], [(0.6, 0.08), (0.6, 0.09), (0.9, 0.01)])
    assert [x["dominated"] for x in d] == [True, False, False]
