"""Loading params.yaml and resolving the run window.

Every stage reads its knobs from the same params.yaml that DVC tracks, so a `dvc exp run -S k=v`
or an Airflow run that rewrites the window changes every stage consistently.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .atomic import atomic_path
from .errors import BadConfigError

if TYPE_CHECKING:
    from .params_schema import Params
    from .params_schema import Window as WindowParams

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class ConfigError(BadConfigError, ValueError):
    """A params.yaml value is missing or unusable; the message names the key."""


def read_params_file(path: str | Path) -> dict[str, Any]:
    """params.yaml's raw mapping, unvalidated (for tools that rewrite the file or report on it)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"params file not found: {path.resolve()}")
    with path.open() as fh:
        try:
            params = yaml.safe_load(fh) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    """params.yaml as the typed :class:`~sass_retrieval.params_schema.Params`: code reads attributes.

    A missing, unknown (misspelt), mistyped or out-of-range key is a ConfigError with one line per
    problem, so every stage rejects a bad file before it does any work.
    """
    from .params_schema import validate_params  # imports this module: import it when needed

    return validate_params(read_params_file(path), source=str(path))


def set_dotted(doc: MutableMapping[str, Any], dotted: str, value: Any) -> Any:
    """Set ``a.b.c`` in nested mappings, creating missing levels; returns the previous value (or None)."""
    node = doc
    *head, last = dotted.split(".")
    for h in head:
        node = node.setdefault(h, {})
    previous = node.get(last)
    node[last] = value
    return previous


def update_params_file(path: str | Path, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Set dotted keys in a params.yaml in place, keeping its comments and layout (ruamel round-trip).

    The file a user reads and `dvc params diff` compares stays the same file, only with new values; it
    is replaced atomically (temp file + rename). Returns the previous value of each key.
    """
    from ruamel.yaml import YAML

    path = Path(path)
    yml = YAML()
    yml.preserve_quotes = True
    yml.width = 4096
    with path.open() as fh:
        doc = yml.load(fh)
    previous = {k: set_dotted(doc, k, v) for k, v in settings.items()}
    with atomic_path(path) as tmp, tmp.open("w") as fh:
        yml.dump(doc, fh)
    return previous


def parse_date(value: int | str) -> dt.date:
    try:
        return dt.datetime.strptime(str(value), "%Y%m%d").date()
    except ValueError as exc:
        raise ConfigError(f"not a YYYYMMDD date: {value!r}") from exc


def fmt_date(day: dt.date) -> int:
    return int(day.strftime("%Y%m%d"))


def shift(date: int, days: int) -> int:
    return fmt_date(parse_date(date) + dt.timedelta(days=days))


@dataclass(frozen=True)
class Window:
    """The run's days: training days, then test days; end is the last day of data the run sees."""

    train_start: int
    train_end: int
    test_start: int
    test_end: int

    @property
    def train_dates(self) -> list[int]:
        return date_range(self.train_start, self.train_end)

    @property
    def test_dates(self) -> list[int]:
        return date_range(self.test_start, self.test_end)

    @property
    def all_dates(self) -> list[int]:
        return date_range(self.train_start, self.test_end)


def date_range(start: int, end: int) -> list[int]:
    a, b = parse_date(start), parse_date(end)
    return [fmt_date(a + dt.timedelta(days=i)) for i in range((b - a).days + 1)]


def make_window(end_date: int, train_days: int, test_days: int) -> Window:
    if train_days < 1 or test_days < 0:
        raise ConfigError(f"window: train_days must be >= 1 and test_days >= 0, got {train_days}, {test_days}")
    test_end = int(end_date)
    test_start = shift(test_end, -test_days + 1)
    train_end = shift(test_start, -1)
    train_start = shift(train_end, -train_days + 1)
    return Window(train_start, train_end, test_start, test_end)


def resolve_window(window: WindowParams, available_dates: list[int]) -> Window:
    """The run's days from params.yaml's ``window`` section; end_date 'auto' means the last day in the store."""
    end = window.end_date
    if str(end) == "auto":
        if not available_dates:
            raise ConfigError("window.end_date is 'auto' but the store holds no days; run `sass ingest` first")
        end = max(available_dates)
    return make_window(fmt_date(parse_date(end)), int(window.train_days), int(window.test_days))


def project_path(params_path: Path, value: str | Path) -> Path:
    """Resolve a path from params relative to the params file's folder."""
    p = Path(value)
    return p if p.is_absolute() else (Path(params_path).resolve().parent / p)
