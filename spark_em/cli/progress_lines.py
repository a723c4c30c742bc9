"""Progress of a fit on stderr, and the record of it that reports, plots and MLflow use.

:class:`FitProgress` is the ``GaussianMixture.progress`` callback of a job: it prints one
line when validation ends, one when initialisation ends and one per iteration and run
(timestamp, run label, log-likelihood, change, seconds, rows/s), and keeps every event's
numbers (per-run histories, seconds per phase).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

from ..progress import InitialisationDone, IterationInfo, ValidationDone


def _stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def _rate(rows: int, seconds: float) -> str:
    if seconds <= 0 or not rows:
        return "-"
    r = rows / seconds
    return f"{r / 1e6:.2f}M" if r >= 1e6 else f"{r / 1e3:.1f}k" if r >= 1e3 else f"{r:.0f}"


@dataclass
class FitProgress:
    """The progress callback of one fit; ``quiet`` records without printing."""

    quiet: bool = False
    stream: object = None
    validation: ValidationDone | None = None
    initialisation: InitialisationDone | None = None
    histories: dict = field(default_factory=dict)  # label -> [mean log-likelihood, ...]
    iteration_seconds: dict = field(default_factory=dict)  # iteration -> seconds (shared scan)
    started: float = field(default_factory=time.perf_counter)

    def __call__(self, event) -> None:
        if isinstance(event, ValidationDone):
            self.validation = event
            bad = sum(event.bad_rows.values()) if event.bad_rows else 0
            self._print(
                f"validation: {event.rows:,} rows, {bad:,} bad rows, weight sum "
                f"{event.weight_sum:.6g}, {event.seconds:.2f}s (blocks: {event.store})"
            )
        elif isinstance(event, InitialisationDone):
            self.initialisation = event
            runs = f"{event.runs} run{'s' if event.runs != 1 else ''}"
            self._print(
                f"initialisation: {event.mode}, {runs}{_search_note(event.starts)}, "
                f"{event.seconds:.2f}s"
            )
        elif isinstance(event, IterationInfo):
            label = event.label or f"run {event.run}"
            self.histories.setdefault(label, []).append(event.mean_log_likelihood)
            self.iteration_seconds[event.iteration] = event.seconds
            change = "" if math.isnan(event.change) else f"  change {event.change:+.3e}"
            done = "  converged" if event.converged else ""
            self._print(
                f"[{label}] iteration {event.iteration:3d}  log-likelihood "
                f"{event.mean_log_likelihood:.6f}{change}  {event.seconds:.2f}s  "
                f"{_rate(event.rows, event.seconds)} rows/s{done}"
            )

    def _print(self, text: str) -> None:
        if not self.quiet:
            print(f"{_stamp()} {text}", file=self.stream or sys.stderr, flush=True)

    def phase_seconds(self) -> dict:
        """Seconds of validation, initialisation and EM iterations (a scan shared by the
        runs counts once)."""
        return {
            "validation": self.validation.seconds if self.validation else None,
            "initialisation": self.initialisation.seconds if self.initialisation else None,
            "iterations": sum(self.iteration_seconds.values()),
        }


def _search_note(starts) -> str:
    """What the sample search found (``initMode="sample-em"``): the trials and the best
    sample log-likelihood of one run, or the runs whose every start degenerated."""
    searched = [s for s in starts if "sampleLogLikelihood" in s]
    if not searched:
        return ""
    degenerate = sum(1 for s in searched if s["degenerate"])
    warn = f"; {degenerate} with only degenerate starts (k too large?)" if degenerate else ""
    if len(searched) == 1:
        s = searched[0]
        return (
            f" (best of {s['trials']} starts on {s['sampleRows']:,} sample rows: "
            f"{s['sampleLogLikelihood']:.6f} per row{warn})"
        )
    first = searched[0]
    return f" ({first['trials']} starts each on {first['sampleRows']:,} sample rows{warn})"
