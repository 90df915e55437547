"""Stage `params`: check params.yaml against the schema before any other stage runs.

dvc.yaml's first stage. Its deps are params.yaml itself (the whole file, so a key that no stage
declares, such as a misspelt one, still makes it run) and the schema; its output is a small marker
file whose content never depends on the values, so a run that changes values does not rerun the other
stages through it (each of them declares the params keys it reads). Every other stage lists the marker
in its deps, so nothing runs on params that do not validate.

Bad params: one line per problem on stderr, e.g.
``error: params.yaml: finetune.temprature: unknown key (did you mean finetune.temperature?)``, exit code 3,
and no marker (DVC removes a stage's outputs before running it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sass_retrieval.atomic import write_text
from sass_retrieval.config import load_params
from sass_retrieval.errors import EXIT_BAD_CONFIG

EXIT_BAD_PARAMS = EXIT_BAD_CONFIG  # 3
MARKER = "reports/params.ok"
# The marker's content: fixed, so its hash (what the downstream stages' deps record) never changes.
MARKER_TEXT = "params.yaml validates against sass_retrieval.params_schema\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--out", default=MARKER, help=f"marker written when the params are valid (default: {MARKER})")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.unlink(missing_ok=True)
    load_params(args.params)   # ConfigError: one `error:` line per problem, exit 3 (sass_retrieval.errors)
    write_text(out, MARKER_TEXT)
    print(f"{args.params}: valid")
    return 0


if __name__ == "__main__":
    from sass_retrieval.errors import run_main

    raise SystemExit(run_main(main))
