"""Skipped scenarios in the metrics: their note names them, with their fallback and size."""

from __future__ import annotations

from sass_retrieval.evaluate.skipped import macro_note, skipped_summary


def test_macro_note_names_the_reported_and_the_skipped_scenarios() -> None:
    assert macro_note(["a", "b"], {}) == "macro = mean over the reported scenarios (a, b)"
    note = macro_note(["a"], {"c": {"reason": "no training rows in the window", "served_by": "a",
                                    "eval_pairs": 7}})
    assert note.endswith("skipped today, not in the macro: c (no training rows in the window; served by a; "
                         "7 eval pairs)")
    assert macro_note([], {}).endswith("(none)")


def test_nothing_skipped_reads_nothing() -> None:
    assert skipped_summary({}, None, None) == {}  # type: ignore[arg-type]
