"""The forest plots the benchmarks draw (CIs of paired differences, one panel per window or slice)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def finish_forest(fig: Any, axes: Any, ylabels: list[str], ncol: int, title: str, path: Path,
                  bottom: float = 0.07) -> None:
    """Label the rows of the first panel (top to bottom), put the legend under the panels, save and close."""
    import matplotlib.pyplot as plt

    axes[0][0].set_yticks(range(len(ylabels)), ylabels)
    axes[0][0].invert_yaxis()
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
