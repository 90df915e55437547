"""The list generator: a DeepSet encoder over the candidates and a pointer-network decoder whose last layers are
made by a hypernetwork from the preference weights (seed 001).

- Encoder: phi(x_i) per candidate, then rho([phi(x_i), mean_j phi(x_j)]): a function of the candidate set, not of
  the order the candidates arrived in (a permutation of the input permutes the encodings, nothing else).
- Decoder: a GRU cell over the encodings of the items placed so far; at slot t the pointer's attention reads, per
  candidate, its encoding, the decoder state and a hand-built step vector (cold-start share so far, whether the
  candidate's tag has appeared, how often it appeared, the slot), because diversity and cold-start share are
  properties of the list so far that the encoding of one candidate cannot know.
- Hypernetwork: w (the WEIGHTED goals' weights) -> the weights and biases of the pointer's last two layers, so one
  trained model serves any w; a per-w model (``fixed_w``) is the same network trained at one w only.
- Decoding: sampled while training (REINFORCE needs log P of the sampled list), greedy when serving; the hard
  rules mask every slot (rerank.rules).

Candidate inputs (``candidate_inputs``) are the evaluator's per-item predictions as logits, the candidate's
place in the order it arrived (the upstream stages' order), whether it is a cold-start item and the share of the
candidates carrying its tag.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .goals import PREDICTED, WEIGHTED, Slate
from .rules import Rules, RuleState

STEP_FEATURES = 4   # cold share so far, tag seen, tag count so far / L, slot / L
CANDIDATE_FEATURES = len(PREDICTED) + 3


@dataclass(frozen=True)
class GeneratorConfig:
    hidden: int = 64        # encoder and decoder width
    pointer: int = 32       # width of the hypernetwork-made layer
    hyper_hidden: int = 64  # the hypernetwork's own width
    length: int = 10        # slots of the served list

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def candidate_inputs(slate: Slate) -> Tensor:
    """(n, C, CANDIDATE_FEATURES): prediction logits, arrival place in [0, 1], cold flag, tag share."""
    n, c = slate.ids.shape
    valid = slate.valid
    p = slate.pred.clamp(1e-4, 1 - 1e-4)
    place = torch.arange(c, dtype=torch.float32).expand(n, c) / max(c - 1, 1)
    same = (slate.tag[:, :, None] == slate.tag[:, None, :]) & valid[:, None, :] & (slate.tag[:, :, None] >= 0)
    share = same.sum(dim=2).float() / valid.sum(dim=1, keepdim=True).clamp(min=1)
    x = torch.cat([torch.log(p) - torch.log1p(-p), place[..., None], slate.cold.float()[..., None],
                   share[..., None]], dim=2)
    return x * valid[..., None]


def per_request(w: Tensor, n: int) -> Tensor:
    """(n, len(WEIGHTED)) float weights from one vector for the batch, or one per request."""
    return (w.expand(n, -1) if w.dim() == 1 or w.shape[0] == 1 else w).reshape(n, -1).float()


class HyperLayers(nn.Module):
    """w -> (A (pointer x hidden), a (pointer), v (pointer), u (CANDIDATE_FEATURES + STEP_FEATURES)): the pointer's
    last layers for that w. u weighs the candidate's own inputs and step vector directly (a linear skip beside
    the pointer MLP) and is linear in w without a constant: "more clicks", "more cold-start", "a tag not seen
    yet" are each one input, each goal owns one direction over them, and a goal whose weight is 0 adds nothing.

    Each layer's weights are an affine function of w plus a small MLP of w: theta(w) = theta_0 + sum_g w_g
    theta_g + mlp(w). The affine part gives every goal its own direction in weight space from the first step,
    so a goal's reward moves that goal's part; an MLP alone tends to settle on one compromise list for every w
    (docs/lab/notes.md). w also enters the pointer's query (``att_w``) for the same reason."""

    def __init__(self, goals: int, hidden: int, pointer: int, width: int) -> None:
        super().__init__()
        self.hidden, self.pointer = hidden, pointer
        size = pointer * hidden + 2 * pointer
        self.base = nn.Parameter(torch.randn(size) * 0.5)
        self.per_goal = nn.Parameter(torch.randn(goals, size) * 0.5)
        self.net = nn.Sequential(nn.Linear(goals, width), nn.ReLU(), nn.Linear(width, size))
        self.skip = nn.Parameter(torch.zeros(goals, CANDIDATE_FEATURES + STEP_FEATURES))

    def forward(self, w: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        out = self.base + w @ self.per_goal + self.net(w)
        h, p = self.hidden, self.pointer
        a = out[:, : p * h].view(-1, p, h) / h ** 0.5
        return a, out[:, p * h: p * h + p], out[:, p * h + p:], w @ self.skip


class ListGenerator(nn.Module):
    def __init__(self, cfg: GeneratorConfig, rules: Rules | None = None) -> None:
        super().__init__()
        self.cfg, self.rules = cfg, rules or Rules()
        h = cfg.hidden
        self.phi = nn.Sequential(nn.Linear(CANDIDATE_FEATURES, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
        self.rho = nn.Sequential(nn.Linear(2 * h, h), nn.ReLU())
        self.start = nn.Linear(h, h)
        self.cell = nn.GRUCell(h, h)
        self.att_e = nn.Linear(h, h, bias=False)
        self.att_q = nn.Linear(h, h)
        self.att_s = nn.Linear(STEP_FEATURES, h, bias=False)
        self.att_w = nn.Linear(len(WEIGHTED), h, bias=False)
        self.hyper = HyperLayers(len(WEIGHTED), h, cfg.pointer, cfg.hyper_hidden)

    def encode(self, slate: Slate) -> tuple[Tensor, Tensor]:
        valid = slate.valid.float()[..., None]
        f = self.phi(candidate_inputs(slate)) * valid
        pooled = f.sum(dim=1) / valid.sum(dim=1).clamp(min=1)
        enc = self.rho(torch.cat([f, pooled[:, None, :].expand_as(f)], dim=2))
        return enc, pooled

    def last_layers(self, w: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The hypernetwork's layers for each request: w is (len(WEIGHTED),) for the batch or (n, ...)."""
        return self.hyper(per_request(w, n))

    def forward(self, slate: Slate, w: Tensor, sample: bool, pins: Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(lists (n, L) of candidate positions, -1 after a list ends; log P of each list (n,); the summed
        entropy of the slots' choice distributions (n,), which training keeps from collapsing early)."""
        n, c = slate.ids.shape
        length = self.cfg.length
        enc, pooled = self.encode(slate)
        x = candidate_inputs(slate)
        a, b, v, u = self.last_layers(w, n)
        wq = self.att_w(per_request(w, n))
        state = torch.tanh(self.start(pooled))
        keys = self.att_e(enc)
        rules = RuleState(slate.tag, slate.valid, length, self.rules, pins)
        seen_count = torch.zeros(n, c)
        cold_so_far = torch.zeros(n)
        lists, logp, entropy = [], torch.zeros(n), torch.zeros(n)
        same_tag = (slate.tag[:, :, None] == slate.tag[:, None, :]) & (slate.tag[:, :, None] >= 0)
        for t in range(length):
            step = torch.stack([cold_so_far.expand(c, n).T / length, (seen_count > 0).float(), seen_count / length,
                                torch.full((n, c), t / length)], dim=2)
            hid = torch.tanh(keys + (self.att_q(state) + wq)[:, None, :] + self.att_s(step))
            z = F.relu(torch.einsum("nph,nch->ncp", a, hid) + b[:, None, :])
            logits = torch.einsum("ncp,np->nc", z, v) + torch.einsum("ncf,nf->nc", torch.cat([x, step], dim=2), u)
            mask = rules.allowed(t)
            alive = mask.any(dim=1)
            logits = logits.masked_fill(~mask, float("-inf"))
            safe = torch.where(alive[:, None], logits, torch.zeros_like(logits))
            logprob = torch.log_softmax(safe, dim=1)
            finite = torch.where(mask, logprob, torch.zeros_like(logprob))   # no 0 * -inf in the gradient
            entropy = entropy - (finite.exp() * finite * mask).sum(dim=1)
            if sample:
                choice = torch.multinomial(logprob.exp(), 1, generator=generator)[:, 0]
            else:
                choice = logprob.argmax(dim=1)
            choice = torch.where(alive, choice, torch.full_like(choice, -1))
            logp = logp + torch.where(alive, torch.gather(logprob, 1, choice.clamp(min=0)[:, None])[:, 0], 0.0)
            rules.place(choice)
            lists.append(choice)
            pick = choice.clamp(min=0)
            chosen = enc[torch.arange(n), pick] * alive[:, None]
            state = self.cell(chosen, state)
            seen_count = seen_count + (same_tag[torch.arange(n), pick] & alive[:, None]).float()
            cold_so_far = cold_so_far + (slate.cold[torch.arange(n), pick] & alive).float()
        return torch.stack(lists, dim=1), logp, entropy

    @torch.no_grad()
    def generate(self, slate: Slate, w: Tensor, pins: Tensor | None = None) -> Tensor:
        """Greedy lists (serving)."""
        was = self.training
        self.eval()
        lists, _, _ = self(slate, w, sample=False, pins=pins)
        self.train(was)
        return lists
