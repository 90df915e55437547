"""The options every benchmark script shares: where KuaiRand is, where to work, where results go, the params
(typed, with --set overrides) and the command a result records."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from sass_retrieval.params_schema import Params

ROOT = Path(__file__).resolve().parents[1]
KUAIRAND_DIR = ROOT / Params().data.kuairand_dir   # params' default location, relative to the checkout
SOURCES = ("kuairand", "synthetic")
KUAIRAND_TABS = "1,0,4,6,2"   # the reported KuaiRand scenarios (docs/benchmark.md)


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


def source_option(p: argparse.ArgumentParser) -> None:
    """--source: KuaiRand-Pure (--data-dir) or the synthetic generator of the params (data.synthetic), and
    --scenarios, the reported ones (default: the source's, declared_scenarios)."""
    p.add_argument("--source", choices=SOURCES, default="kuairand",
                   help="synthetic: the params' generator (data.synthetic), the world `make run` trains on")
    p.add_argument("--scenarios", default=None,
                   help=f"reported scenarios, comma-separated (KuaiRand: its tabs {KUAIRAND_TABS}; synthetic: the params')")


def declared_scenarios(args: argparse.Namespace, params: Params) -> list[str]:
    """The reported scenarios (--scenarios, or the source's) and ``other``, where the rest map."""
    names = args.scenarios or (KUAIRAND_TABS if args.source == "kuairand" else ",".join(params.scenarios.names))
    return names.split(",") + ["other"]


def parse_sets(items: list[str]) -> list[tuple[str, Any]]:
    import yaml

    return [(k, yaml.safe_load(v)) for k, v in (s.split("=", 1) for s in items)]


def bench_params(args: argparse.Namespace, quiet: tuple[str, ...] = ()) -> Params:
    """Logging as every benchmark logs (the training loops' per-epoch lines quieted), the params file with
    the --set overrides applied (validated), and torch's thread count from train.threads (before provenance
    records it)."""
    import torch

    from sass_retrieval.config import load_params

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in QUIET_LOGGERS + quiet:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    params = load_params(args.params)
    if args.set:
        params = params.override(dict(parse_sets(args.set)), source="--set")
    torch.set_num_threads(params.train.threads)
    return params


KUAIRAND_DEV = (20220505, 8, 3)   # end date, train days, test days: the dev split of docs/benchmark.md


def window_options(p: argparse.ArgumentParser) -> None:
    """--end-date, --train-days, --test-days: the window, each defaulting to the source's (:func:`bench_window`)."""
    p.add_argument("--end-date", type=int, default=None, help="default: the source's (KuaiRand: the dev split; "
                                                              "synthetic: the params' window)")
    p.add_argument("--train-days", type=int, default=None)
    p.add_argument("--test-days", type=int, default=None)


def bench_window(args: argparse.Namespace, params: Params):
    """The window of --end-date/--train-days/--test-days; what is not given is the source's: KuaiRand's dev
    split, or the synthetic generator's last day with the params' window lengths."""
    from sass_retrieval.config import make_window

    if args.source == "synthetic":
        from sass_retrieval.data.synthetic import SyntheticConfig

        default = (SyntheticConfig.from_params(params).dates[-1], params.window.train_days, params.window.test_days)
    else:
        default = KUAIRAND_DEV
    end, train_days, test_days = (given if given is not None else d for given, d in
                                  zip((args.end_date, args.train_days, args.test_days), default, strict=True))
    return make_window(end, train_days, test_days)


def source_store(args: argparse.Namespace, params: Params, work: Path) -> Path:
    """``work/store`` written afresh from the source: KuaiRand-Pure imported from --data-dir, or every day
    of the params' synthetic generator (what the ingest stage writes)."""
    from sass_retrieval.experiment import empty_store, fresh_kuairand_store

    if getattr(args, "source", "kuairand") == "kuairand":
        return fresh_kuairand_store(Path(args.data_dir), work)
    from sass_retrieval.data.synthetic import SyntheticConfig, generate

    store = empty_store(work)
    generate(store, SyntheticConfig.from_params(params), progress=False)
    return store


def recorded_path(value: str) -> str:
    """A path as a result records it: relative to the checkout (``../shared/...``, ``bench/.work/...``) when it
    lies beside it, otherwise only its last part (``<dir>/name``): no machine's folders. Other text unchanged."""
    if not os.path.isabs(value):
        return value
    path = Path(value).resolve()
    if path.is_relative_to(ROOT.parent):
        return os.path.relpath(path, ROOT)
    return f"<dir>/{path.name}"


def recorded_args(args: list[str]) -> list[str]:
    """Command-line arguments as a result records them (recorded_path, also in ``--key=PATH``)."""
    out = []
    for a in args:
        if a.startswith("--") and "=" in a:
            key, value = a.split("=", 1)
            out.append(f"{key}={recorded_path(value)}")
        else:
            out.append(recorded_path(a))
    return out


def bench_provenance(script: str, argv: list[str] | None = None) -> dict[str, Any]:
    """experiment.provenance for ``python bench/<script>.py <argv>`` (default: this process's arguments),
    with recorded_args' paths."""
    from sass_retrieval.experiment import provenance

    rel = os.path.relpath(Path(script).resolve(), ROOT)
    return provenance([rel, *recorded_args(sys.argv[1:] if argv is None else list(argv))])
