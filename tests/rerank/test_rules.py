"""Hard rules are masks: no list the generator, the baseline or the rule pipeline builds ever breaks one (property
tests over random slates, pins and weights)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sass_retrieval.errors import BadInputError
from sass_retrieval.rerank.generator import GeneratorConfig, ListGenerator
from sass_retrieval.rerank.goals import Slate
from sass_retrieval.rerank.reinforce import baseline_lists
from sass_retrieval.rerank.rule_pipeline import rule_lists
from sass_retrieval.rerank.rules import Rules, RuleState, breaks_rules, check_pins

LENGTH = 6


@st.composite
def slates(draw):
    n, c = draw(st.integers(1, 4)), draw(st.integers(1, 12))
    tags = torch.tensor(draw(st.lists(st.lists(st.integers(-1, 2), min_size=c, max_size=c), min_size=n, max_size=n)))
    valid = torch.tensor(draw(st.lists(st.lists(st.booleans(), min_size=c, max_size=c), min_size=n, max_size=n)))
    ids = torch.where(valid, torch.arange(n * c).view(n, c), -1)
    seed = draw(st.integers(0, 10_000))
    pred = torch.rand(n, c, 3, generator=torch.Generator().manual_seed(seed))
    cold = torch.rand(n, c, generator=torch.Generator().manual_seed(seed + 1)) < 0.3
    pins = torch.full((n, LENGTH), -1)
    for r in range(n):   # at most two pins per request, of valid candidates, slots and items distinct
        choices = torch.nonzero(valid[r]).flatten().tolist()
        for _ in range(draw(st.integers(0, min(2, len(choices))))):
            item, slot = draw(st.sampled_from(choices)), draw(st.integers(0, LENGTH - 1))
            if item not in pins[r].tolist() and pins[r, slot] < 0:
                pins[r, slot] = item
    max_run = draw(st.integers(1, 3))
    return Slate(ids, pred, tags, cold), pins, Rules(max_run=max_run), seed


def _no_placeable_left(slate: Slate, lists: torch.Tensor, pins: torch.Tensor, rules: Rules) -> None:
    """Where a list ended early, replaying it up to its end, nothing was placeable at the next slot."""
    state = RuleState(slate.tag, slate.valid, LENGTH, rules, pins)
    for t in range(LENGTH):
        mask = state.allowed(t)
        ended = lists[:, t] < 0
        assert not (mask.any(dim=1) & ended & ~state.ended).any()
        assert bool(mask[~ended].gather(1, lists[~ended, t:t + 1]).all()), "every choice was placeable"
        state.place(lists[:, t])


@settings(max_examples=60, deadline=None)
@given(slates())
def test_generated_lists_never_break_a_rule(case) -> None:
    slate, pins, rules, seed = case
    try:
        check_pins(pins, slate.tag, slate.valid, rules)
    except BadInputError:
        pins = torch.full_like(pins, -1)   # the pins alone break the rule: refused up front (tested below)
    torch.manual_seed(seed)
    model = ListGenerator(GeneratorConfig(hidden=8, pointer=4, hyper_hidden=8, length=LENGTH), rules)
    w = torch.rand(len(slate), 4, generator=torch.Generator().manual_seed(seed))
    for sample in (True, False):
        with torch.no_grad():
            lists, _, _ = model(slate, w, sample=sample, pins=pins, generator=torch.Generator().manual_seed(seed))
        assert not breaks_rules(lists, slate.tag, rules, pins).any()
        _no_placeable_left(slate, lists, pins, rules)
        assert bool(slate.valid.gather(1, lists.clamp(min=0))[lists >= 0].all()), "only real candidates"


@settings(max_examples=60, deadline=None)
@given(slates())
def test_baseline_and_rule_pipeline_keep_the_run_rule(case) -> None:
    slate, _, rules, _ = case
    assert not breaks_rules(baseline_lists(slate, LENGTH, rules), slate.tag, rules).any()
    for per_tag, cold in ((LENGTH, 0), (1, 2)):
        assert not breaks_rules(rule_lists(slate, LENGTH, per_tag, cold, rules), slate.tag, rules).any()


def test_pins_that_no_list_could_keep_are_refused() -> None:
    tags, valid = torch.tensor([[1, 1, 1, 2]]), torch.ones(1, 4, dtype=torch.bool)
    with pytest.raises(BadInputError, match="pins 3 adjacent items of tag 1"):
        check_pins(torch.tensor([[0, 1, 2, -1]]), tags, valid, Rules(max_run=2))
    with pytest.raises(BadInputError, match="pins one item to two slots"):
        check_pins(torch.tensor([[0, -1, 0, -1]]), tags, valid, Rules())
    with pytest.raises(BadInputError, match="not among its candidates"):
        check_pins(torch.tensor([[-1, 3, -1, -1]]), tags, torch.tensor([[True, True, True, False]]), Rules())


def test_a_pin_takes_its_slot_and_its_neighbours_respect_it() -> None:
    # tags: candidates 0-3 share tag 7; pin candidate 3 at slot 2: slots 0-1 cannot both be tag 7
    slate = Slate(torch.arange(6)[None], torch.rand(1, 6, 3), torch.tensor([[7, 7, 7, 7, 8, 9]]),
                  torch.zeros(1, 6, dtype=torch.bool))
    pins = torch.tensor([[-1, -1, 3, -1]])
    rules = Rules(max_run=2)
    model = ListGenerator(GeneratorConfig(hidden=8, pointer=4, hyper_hidden=8, length=4), rules)
    for seed in range(20):
        with torch.no_grad():
            lists, _, _ = model(slate, torch.rand(4), sample=True, pins=pins,
                                generator=torch.Generator().manual_seed(seed))
        assert lists[0, 2] == 3
        assert not breaks_rules(lists, slate.tag, rules, pins).any()
