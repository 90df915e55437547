"""The options every benchmark script shares: where KuaiRand is, where to work, where results go."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KUAIRAND_DIR = ROOT.parent / "shared" / "data" / "kuairand_pure"  # ../shared beside the checkout, as in CI


def bench_parser(doc: str | None, name: str, kuairand: bool = True) -> argparse.ArgumentParser:
    """A parser with --data-dir (if the bench reads KuaiRand), --work bench/.work/<name> and
    --out bench/results/<name> (the .md and .json of the results table)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if kuairand:
        p.add_argument("--data-dir", default=str(KUAIRAND_DIR))
    p.add_argument("--work", default=str(ROOT / "bench" / ".work" / name))
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / name))
    return p


QUIET_LOGGERS = ("faiss.loader", "sass_retrieval.train.loop", "sass_retrieval.train.finetune")


def params_options(p: argparse.ArgumentParser, example: str) -> None:
    """--params (default: the checkout's params.yaml) and repeatable --set key=value overrides (YAML values)."""
    p.add_argument("--set", action="append", default=[], help=f"override params, e.g. {example}")
    p.add_argument("--params", default=str(ROOT / "params.yaml"))


def parse_sets(items: list[str]) -> list[tuple[str, object]]:
    import yaml

    return [(k, yaml.safe_load(v)) for k, v in (s.split("=", 1) for s in items)]


def bench_params(args: argparse.Namespace, quiet: tuple[str, ...] = ()) -> dict[str, Any]:
    """Logging as every benchmark logs (the training loops' per-epoch lines quieted), the params with the
    --set overrides applied, and torch's thread count from train.threads (before provenance records it)."""
    import torch
    import yaml

    from sass_retrieval.config import set_dotted

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in QUIET_LOGGERS + quiet:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    params = yaml.safe_load(Path(args.params).read_text())
    for k, v in parse_sets(args.set):
        set_dotted(params, k, v)
    torch.set_num_threads(int(params["train"]["threads"]))
    return params
