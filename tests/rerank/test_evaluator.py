from __future__ import annotations

import numpy as np
import pytest

from sass_retrieval.config import ConfigError
from sass_retrieval.params_schema import Params
from sass_retrieval.rerank.evaluator import platt


def test_platt_recovers_a_known_logistic_map() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, 200_000)
    labels = rng.random(len(logits)) < 1 / (1 + np.exp(-(0.5 * logits - 2.0)))
    a, b = platt(logits, labels)
    assert a == pytest.approx(0.5, abs=0.02) and b == pytest.approx(-2.0, abs=0.03)
    assert platt(logits[:10], np.zeros(10)) == (1.0, 0.0)   # one label only: nothing to calibrate


def test_the_evaluator_features_are_checked_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"rerank\.features.*unknown feature name\(s\) item_popularity"):
        Params().override({"rerank.features": ["retrieval_score", "item_popularity"]})


def test_logits_are_centred_per_request() -> None:
    from sass_retrieval.rerank.evaluator import centred

    out = centred(np.array([1.0, 3.0, 10.0, 20.0, 30.0]), np.array([7, 7, 2, 2, 2]))
    assert out.tolist() == [-1.0, 1.0, -10.0, 0.0, 10.0]
