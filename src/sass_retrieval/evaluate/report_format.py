"""How the run report writes values, and how it renders one table in either format.

A table is a :class:`Styled`: two DataFrames of the same shape, the text of each cell and its CSS classes.
The HTML page renders it with pandas' Styler (the classes become ``<td class>``, the page's CSS styles
them); the markdown twin with ``DataFrame.to_markdown``, where a bold class becomes ``**`` and a tone an
arrow (markdown has no colour). The classes are decided once, by the code that builds the table.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .significance import DASH
from .significance import finite as num
from .slices import SLICE_DESCRIPTIONS, SLICES

METRIC_LABEL = {"ndcg": "NDCG", "hit_rate": "HitRate", "recall": "Recall"}
SHORT_LABEL = {"ndcg": "NDCG", "hit_rate": "HR", "recall": "Recall"}
NOTE_LEVEL = "note"   # a column level the HTML header shows and markdown's one header line leaves out
ARROW = {"pos": " ▲", "neg": " ▼"}

Cell = str | tuple[str, str]   # a cell's text, or (text, CSS classes): num, b, pos, neg, muted, shade


# ---- values --------------------------------------------------------------------------------------


def fmt_metric(v: Any, digits: int = 4) -> str:
    f = num(v)
    return DASH if f is None else f"{f:.{digits}f}"


def fmt_date(v: Any) -> str:
    """YYYYMMDD as YYYY-MM-DD (anything else as given)."""
    text = str(v) if v is not None else DASH
    return f"{text[:4]}-{text[4:6]}-{text[6:]}" if len(text) == 8 and text.isdigit() else text


def fmt_count(v: Any) -> str:
    f = num(v)
    return DASH if f is None else f"{int(f):,}"


def fmt_delta(v: float | None, digits: int = 4) -> str:
    if v is None:
        return DASH
    return f"±{0:.{digits}f}" if round(v, digits) == 0 else f"{v:+.{digits}f}"


def fmt_seconds(v: Any) -> str:
    f = num(v)
    if f is None:
        return DASH
    return f"{f:.0f} s" if f < 120 else f"{f / 60:.1f} min"


def tone(v: float | None, digits: int = 4) -> str:
    """The CSS tone of a difference: muted when it rounds to zero or is undefined."""
    if v is None or round(v, digits) == 0:
        return "muted"
    return "pos" if v > 0 else "neg"


def metric_label(name: str, labels: Mapping[str, str] = METRIC_LABEL) -> str:
    """ndcg@50 -> NDCG@50."""
    base, _, k = name.partition("@")
    return f"{labels.get(base, base)}@{k}" if k else labels.get(base, base)


def short_label(name: str) -> str:
    """hit_rate@50 -> HR@50 (the compact column headers)."""
    return metric_label(name, SHORT_LABEL)


def verdict(res: Mapping[str, Any] | None, reference: str, row: str) -> tuple[str, str]:
    """(text, tone) of one bootstrap result: who is better, or "no measurable difference"."""
    if not res or num(res.get("diff")) is None:
        return "no pairs", "muted"
    if not res.get("significant"):
        return "no measurable difference", "muted"
    return (f"{reference} better", "pos") if float(res["diff"]) > 0 else (f"{row} better", "neg")


def slice_descriptions(definition: Mapping[str, Any] | None = None) -> dict[str, str]:
    """One line per slice, with the thresholds of this run (the definitions live in ``slices.py``)."""
    d = dict(definition or {})
    return {name: text.format(cold_max=d.get("cold_max", 5), cold_min_other=d.get("cold_min_other", 5))
            for name, text in SLICE_DESCRIPTIONS.items()}


def slice_rank(name: str) -> tuple[int, str]:
    return (SLICES.index(name) if name in SLICES else len(SLICES), name)


# ---- tables --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Styled:
    """A table as shown: each cell's text, and its CSS classes (same index and columns)."""

    text: pd.DataFrame
    css: pd.DataFrame

    def column(self, label: Any) -> list[str]:
        """The texts of one column (a tuple for grouped columns)."""
        return self.text[label].tolist()


def styled(columns: Sequence[Any] | pd.MultiIndex, rows: Sequence[Sequence[Cell]]) -> Styled:
    """A :class:`Styled` from rows of cells; ``columns`` a list of labels or a MultiIndex (grouped headers)."""
    cols = columns if isinstance(columns, pd.MultiIndex) else pd.Index(list(columns))
    text = [[c if isinstance(c, str) else c[0] for c in r] for r in rows]
    css = [["" if isinstance(c, str) else c[1] for c in r] for r in rows]
    return Styled(pd.DataFrame(text, columns=cols), pd.DataFrame(css, columns=cols))


def html_table(t: Styled) -> str:
    """The table through pandas' Styler: escaped text, the classes on each ``<td>``, grouped headers as
    spanning header rows; the id is a digest of the content, so a page renders the same every time."""
    uid = hashlib.sha1(t.text.to_json().encode()).hexdigest()[:10]
    html = (t.text.style.set_td_classes(t.css).hide(axis="index").format(escape="html")
            .format_index(escape="html", axis=1).set_uuid(uid).to_html(cell_ids=False))
    return re.sub(r'<style type="text/css">\s*</style>\s*', "", html)   # no styles: the page's CSS styles the classes


def md_text(text: Any, cell: bool = False) -> str:
    """Markdown text with no raw HTML (``&``, ``<`` as entities); in a table cell also no ``|`` or newline."""
    text = str(text).replace("&", "&amp;").replace("<", "&lt;")
    return " ".join(text.replace("|", "\\|").split()) if cell else text


def md_table(t: Styled) -> str:
    """The table as a markdown pipe table: one header line (grouped headers folded: "s0 NDCG@50"), bold as
    ``**``, tones as arrows, numeric columns right-aligned."""
    cols = t.text.columns
    if isinstance(cols, pd.MultiIndex):
        keep = [i for i, name in enumerate(cols.names) if name != NOTE_LEVEL]
        header = [" ".join(str(label[i]) for i in keep if str(label[i])) for label in cols]
    else:
        header = [str(c) for c in cols]

    def cell(text: str, css: str) -> str:
        classes = css.split()
        out = md_text(text, cell=True) + "".join(ARROW.get(c, "") for c in classes)
        return f"**{out}**" if "b" in classes and out else out

    body = [[cell(x, c) for x, c in zip(tr, cr, strict=True)]
            for tr, cr in zip(t.text.itertuples(index=False), t.css.itertuples(index=False), strict=True)]
    align = ["right" if t.css.iloc[:, j].str.split().map(lambda c: "num" in c).any() else "left"
             for j in range(len(header))]
    frame = pd.DataFrame(body, columns=[md_text(h, cell=True) for h in header])
    return frame.to_markdown(index=False, colalign=align, disable_numparse=True)
