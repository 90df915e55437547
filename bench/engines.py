"""Engines: the split stage's work in DuckDB (the product code, data/split_sql.py) against Polars' streaming engine.

    python bench/engines.py                  # a 30M-row synthetic store
    python bench/engines.py --rows 300000    # the smoke test's size

A synthetic store of ``--rows`` interactions (bench/scale.py's size_params: users = n/50, items = n/200, 12 days)
is written by ``python -m pipelines.ingest`` in the work folder. Then, for the largest scenario of the window's
training days, two tasks, each engine in its own process under /usr/bin/time (wall s, peak RSS):

- ``split``: one scenario's split, the five tables the split stage writes (users, items, item_daily, positives,
  exposure_dist);
- ``positives``: the positives with their as-of-day click histories and counts alone (the heaviest table).

DuckDB runs the product's queries (data.split_sql) within ``data.memory_limit_mib``; Polars runs a faithful port of
the same queries written here (lazy frames from ``pl.scan_parquet`` of the same part files, collected with
``engine="streaming"``), the measured alternative only: no product code uses it. Both write Parquet into the work
folder; the smoke test checks that the two engines' tables agree. Writes bench/results/engines.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))

from bench_cli import bench_parser, bench_provenance  # noqa: E402
from scale import size_params, write_params  # noqa: E402
from stage_timer import run_stage  # noqa: E402

from sass_retrieval.config import load_params  # noqa: E402
from sass_retrieval.data.schema import stored_dates  # noqa: E402
from sass_retrieval.experiment import write_results  # noqa: E402

TASKS = ("split", "positives")
ENGINES = ("duckdb", "polars")


# ---- the work of one engine, in its own process -------------------------------------------------------------

def _setup(work: Path) -> tuple:
    """The run of ``work``'s params, the largest trained scenario, the training days' part files, the meta."""
    from sass_retrieval.data.engine import interaction_files
    from sass_retrieval.data.features import split_meta
    from sass_retrieval.run import load_run

    os.chdir(work)                       # params' store_dir is relative to the project (work) folder
    run = load_run(work / "params.yaml")
    per: dict[str, int] = {}
    for raw, n in run.scenarios.rows.items():
        s = run.scenarios.mapping.get(raw)
        if s in run.names:
            per[s] = per.get(s, 0) + n
    scenario = max(per, key=lambda s: (per[s], s))
    w = run.window
    meta = split_meta(run.names, list(run.scenarios.reported), run.scenarios.mapping, w.train_dates, w.test_dates,
                      run.params.features.seq_len)
    return run, scenario, interaction_files(run.store, w.train_dates), meta


def duckdb_task(work: Path, task: str, out: Path) -> None:
    from sass_retrieval.data.engine import connect
    from sass_retrieval.data.split_sql import (
        _rows_view,
        copy_parquet,
        raw_filter,
        scenario_tables,
        write_scenario_split_sql,
    )

    run, scenario, files, meta = _setup(work)
    con = connect(run.params.data.memory_limit_mib, temp_dir=out.parent / f".{out.name}-duckdb")
    if task == "split":
        write_scenario_split_sql(con, files, run.store, out, scenario, run.scenarios.mapping, meta)
        return
    _rows_view(con, files, raw_filter(run.scenarios.mapping, [scenario]), run.scenarios.mapping)
    out.mkdir(parents=True, exist_ok=True)
    copy_parquet(con, scenario_tables(con, run.store, meta["train_dates"], meta["seq_len"])["positives"],
                 out / "positives.parquet")


def polars_tables(files: list[Path], store: Path, raws: list[str], dates: list[int], seq_len: int,
                  tables: tuple[str, ...]):
    """The split's tables as Polars lazy frames: the port of data.split_sql's queries (the same semantics:
    counts before each day, the click histories cut at runs of same-day clicks in time order for clicks and by
    day for the other positives, the reference's row order with a global row index as the tie break)."""
    import polars as pl

    from sass_retrieval.data.features import PAD, seq_columns
    from sass_retrieval.data.schema import OBJECTIVES, table_path

    L = seq_len
    labels = list(OBJECTIVES.values())
    rows = (pl.scan_parquet([str(f) for f in files], hive_partitioning=False, row_index_name="gi")
            .filter(pl.col("scenario").is_in(raws))
            .select("gi", "user_id", "video_id", "date", "time_ms", *labels))

    def ctr(clicks: pl.Expr, exposures: pl.Expr) -> pl.Expr:
        return ((clicks + 2.0) / (exposures + 5.0)).cast(pl.Float32)

    def padded(h: str) -> list[pl.Expr]:
        n = pl.col(h).list.len().fill_null(0)
        return [pl.when(n >= L - j).then(pl.col(h).list.get(n - (L - j), null_on_oob=True)).otherwise(PAD)
                .cast(pl.Int64).alias(c) for j, c in enumerate(seq_columns(L))]

    def last_lists(lst: str, shifts: range, by: str) -> pl.Expr:
        """The last L ids of the concatenated lists of the groups ``shifts`` before each group (over ``by``)."""
        parts = [pl.col(lst).shift(k).over(by).fill_null(pl.lit([], dtype=pl.List(pl.Int64))) for k in shifts]
        return pl.concat_list(parts).list.tail(L)

    daily_u = rows.group_by("user_id", "date").agg(exp=pl.len().cast(pl.Int64), clk=pl.col("is_click").sum()
                                                    .cast(pl.Int64))
    daily_v = rows.group_by("video_id", "date").agg(exp=pl.len().cast(pl.Int64), clk=pl.col("is_click").sum()
                                                     .cast(pl.Int64))
    clicks = (rows.filter(pl.col("is_click") == 1).sort("user_id", "time_ms", "video_id", "gi")
              .with_columns(run=(pl.col("date") != pl.col("date").shift(1)).fill_null(True).cast(pl.Int64)
                            .cum_sum().over("user_id")))
    out = {}
    if "positives" in tables:
        run_hist = (clicks.group_by("user_id", "run", maintain_order=True).agg(lst=pl.col("video_id"))
                    .sort("user_id", "run").with_columns(h=last_lists("lst", range(L, 0, -1), "user_id"))
                    .select("user_id", "run", "h"))
        day_hist = (clicks.sort("user_id", "date", "time_ms", "video_id", "gi")
                    .group_by("user_id", "date", maintain_order=True).agg(lst=pl.col("video_id"))
                    .sort("user_id", "date").with_columns(h=last_lists("lst", range(L - 1, -1, -1), "user_id"))
                    .select("user_id", "date", "h").sort("date"))
        ub = (daily_u.sort("user_id", "date")
              .with_columns(exp_count=pl.col("exp").cum_sum().over("user_id") - pl.col("exp"),
                            click_count=pl.col("clk").cum_sum().over("user_id") - pl.col("clk"))
              .select("user_id", "date", "exp_count", "click_count"))
        keep = ["gi", "user_id", "video_id", "date", "time_ms", *labels, "h"]
        clicked = clicks.join(run_hist, on=["user_id", "run"], how="left").select(keep)
        other = (rows.filter((pl.col("is_click") != 1) & pl.any_horizontal(pl.col(c) == 1 for c in labels))
                 .sort("date").join_asof(day_hist, on="date", by="user_id", strategy="backward",
                                         allow_exact_matches=False).select(keep))
        out["positives"] = (pl.concat([clicked, other]).join(ub, on=["user_id", "date"], how="left")
                            .sort("user_id", "time_ms", "video_id", "gi")
                            .select("user_id", "video_id", "date", *labels, *padded("h"),
                                    pl.col("exp_count").fill_null(0), pl.col("click_count").fill_null(0),
                                    ctr(pl.col("click_count").fill_null(0), pl.col("exp_count").fill_null(0))
                                    .alias("ctr")))
    if "users" in tables:
        last = clicks.group_by("user_id").agg(h=pl.col("video_id").tail(L))
        static = pl.scan_parquet(str(table_path(store, "users")))
        out["users"] = (daily_u.group_by("user_id").agg(exp_count=pl.col("exp").sum(), click_count=pl.col("clk").sum())
                        .join(last, on="user_id", how="left")
                        .select("user_id", "exp_count", "click_count", *padded("h"),
                                ctr(pl.col("click_count"), pl.col("exp_count")).alias("ctr"))
                        .join(static, on="user_id", how="left").sort("user_id"))
    if "items" in tables:
        static = pl.scan_parquet(str(table_path(store, "items")))
        last_day = max(dates)
        out["items"] = (daily_v.group_by("video_id").agg(
            exp_count=pl.col("exp").sum(), click_count=pl.col("clk").sum(),
            exp_recent=pl.col("exp").filter(pl.col("date") == last_day).sum(),
            clk_recent=pl.col("clk").filter(pl.col("date") == last_day).sum())
            .select("video_id", "exp_count", "click_count", ctr(pl.col("click_count"), pl.col("exp_count")).alias("ctr"),
                    "exp_recent", "clk_recent")
            .join(static, on="video_id", how="left").sort("video_id"))
    if "item_daily" in tables:
        d = pl.LazyFrame({"i": list(range(len(dates))), "date": [int(x) for x in dates]},
                         schema={"i": pl.Int64, "date": pl.Int32})
        grid = daily_v.select("video_id").unique().join(d, how="cross")
        cells = (grid.join(daily_v, on=["video_id", "date"], how="left").with_columns(pl.col("exp", "clk").fill_null(0))
                 .sort("video_id", "i"))
        out["item_daily"] = cells.select(
            "video_id", "date",
            exp_count=pl.col("exp").cum_sum().over("video_id") - pl.col("exp"),
            click_count=pl.col("clk").cum_sum().over("video_id") - pl.col("clk"),
            exp_recent=pl.col("exp").shift(1).over("video_id").fill_null(0),
            clk_recent=pl.col("clk").shift(1).over("video_id").fill_null(0),
        ).with_columns(ctr=ctr(pl.col("click_count"), pl.col("exp_count")))
    if "exposure_dist" in tables:
        out["exposure_dist"] = (daily_v.group_by("video_id").agg(exposures=pl.col("exp").sum())
                                .with_columns(prob=pl.col("exposures").cast(pl.Float64) / pl.col("exposures").sum().cast(pl.Float64)).sort("video_id"))
    return out


def polars_task(work: Path, task: str, out: Path) -> None:
    run, scenario, files, meta = _setup(work)
    raws = sorted(r for r, m in run.scenarios.mapping.items() if m == scenario)
    tables = ("users", "items", "item_daily", "positives", "exposure_dist") if task == "split" else ("positives",)
    frames = polars_tables(files, run.store, raws, meta["train_dates"], meta["seq_len"], tables)
    out.mkdir(parents=True, exist_ok=True)
    for name, lf in frames.items():
        lf.collect(engine="streaming").write_parquet(out / f"{name}.parquet", row_group_size=65536)


# ---- the driver -----------------------------------------------------------------------------------------------

def measure(work: Path, engine: str, task: str, env: dict[str, str]) -> dict:
    out = work / "out" / engine / task
    shutil.rmtree(out, ignore_errors=True)
    t = run_stage(f"{engine} {task}", [str(Path(__file__).resolve()), "--worker", engine, "--task", task,
                                       "--work", str(work), "--worker-out", str(out)], cwd=work, env=env)
    return {"engine": engine, "task": task, "wall_s": t.seconds, "peak_mib": t.peak_mib}


def table_md(results: list[dict]) -> str:
    lines = ["| task | engine | wall s | peak RSS MiB |", "|---|---|---:|---:|"]
    lines += [f"| {r['task']} | {r['engine']} | {r['wall_s']:.1f} | {r['peak_mib']:.0f} |" for r in results]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, "engines", kuairand=False)
    p.add_argument("--rows", type=int, default=30_000_000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--params", default=str(ROOT / "params.yaml"), help="the params the store's size starts from")
    p.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    p.add_argument("--task", choices=TASKS, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        (duckdb_task if args.worker == "duckdb" else polars_task)(Path(args.work).resolve(), args.task,
                                                                  Path(args.worker_out).resolve())
        return 0
    prov = bench_provenance(__file__, argv)
    out_path = Path(args.out).resolve()
    params, users, items = size_params(load_params(args.params), args.rows, args.threads)
    work = (Path(args.work) / f"rows{args.rows}").resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    write_params(work, params)
    env = {"SASS_ALLOW_EXTERNAL_PATHS": "1", "OMP_NUM_THREADS": str(args.threads),
           "POLARS_MAX_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
    ingest = run_stage("ingest", ["-m", "pipelines.ingest"], cwd=work, env=env)
    _, scenario, files, _ = _setup(work)
    results = [measure(work, engine, task, env) for task in TASKS for engine in ENGINES]
    body = (f"A synthetic world of {args.rows:,} rows over 12 days ({users:,} users, {items:,} items), of which the "
            f"ingest stage stores the window's {len(stored_dates(work / 'data' / 'store'))} days "
            f"(ingest {ingest.seconds:.0f} s), the split of its largest scenario (`{scenario}`) over the window's training "
            f"days ({len(files)} part files), each engine in its own process under /usr/bin/time, "
            f"{args.threads} threads, DuckDB bounded by data.memory_limit_mib = {params.data.memory_limit_mib} MiB.\n\n"
            + table_md(results))
    print(table_md(results))
    write_results(out_path, "Data engines: DuckDB against Polars streaming", prov, body,
                  {"rows": args.rows, "users": users, "items": items, "scenario": scenario,
                   "memory_limit_mib": params.data.memory_limit_mib, "ingest_s": ingest.seconds, "results": results})
    print(json.dumps({"out": str(out_path.with_suffix(".md"))}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
