from __future__ import annotations

import math

import pytest
import torch

from sass_retrieval.errors import BadInputError
from sass_retrieval.rerank.goals import Slate, distinct_tags, parse_weights, reward, utilities, weight_vector


def _slate() -> Slate:
    ids = torch.tensor([[10, 11, 12, 13]])
    pred = torch.tensor([[[1.0, 0.5, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0], [0.5, 0.5, 0.5]]])
    return Slate(ids, pred, torch.tensor([[1, 1, -1, -1]]), torch.tensor([[True, False, False, True]]))


def test_utilities_by_hand() -> None:
    lists = torch.tensor([[0, 3, -1]])   # two items, one empty slot
    u = utilities(_slate(), lists)
    d = [1 / math.log2(2), 1 / math.log2(3), 1 / math.log2(4)]
    assert u["click"].item() == pytest.approx((1.0 * d[0] + 0.5 * d[1]) / sum(d), rel=1e-5)
    assert u["like"].item() == pytest.approx((0.0 * d[0] + 0.5 * d[1]) / sum(d), rel=1e-5)
    assert u["diversity"].item() == pytest.approx(2 / 3)      # tags 1 and unknown: two distinct of 3 slots
    assert u["cold_start"].item() == pytest.approx(2 / 3)


def test_unknown_tags_never_repeat_and_empty_slots_do_not_count() -> None:
    tags = torch.tensor([[-1, -1, 5, 5]])
    assert distinct_tags(tags, torch.tensor([[True, True, True, True]])).item() == 3
    assert distinct_tags(tags, torch.tensor([[True, False, True, False]])).item() == 2


def test_reward_weights_goals_by_their_scale() -> None:
    u = {"click": torch.tensor([0.2]), "like": torch.tensor([0.1]), "diversity": torch.tensor([0.5]),
         "cold_start": torch.tensor([0.0])}
    scales = {"click": 0.1, "like": 1.0, "diversity": 0.5, "cold_start": 1.0}
    assert reward(u, torch.tensor([1.0, 0.0, 1.0, 1.0]), scales).item() == pytest.approx(2.0 + 1.0)


def test_weights_parse_and_refuse_in_one_line() -> None:
    defaults = {"click": 1.0, "like": 0.3, "diversity": 0.3, "cold_start": 0.1}
    assert weight_vector(parse_weights("diversity:0.9"), defaults).tolist() == pytest.approx([1.0, 0.3, 0.9, 0.1])
    with pytest.raises(BadInputError, match="unknown goal.*novelty"):
        weight_vector({"novelty": 1.0}, defaults)
    with pytest.raises(BadInputError, match="weight of click is 2.0: must be in"):
        weight_vector({"click": 2.0}, defaults)
    with pytest.raises(BadInputError, match="is not goal:weight"):
        parse_weights("click=1")
