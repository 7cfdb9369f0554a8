"""The probe's outputs: the tries as a table, CSV, Markdown and a bar chart against the budget."""

import math
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from paddy.core import atomic
from paddy.probe.search import ProbeReport, TryResult

CSV_NAME = "probe.csv"
PLOT_NAME = "probe.png"
MARKDOWN_NAME = "probe.md"
COLUMNS = ("arch", "size", "accum", "micro_bs", "peak_allocated_mb", "peak_reserved_mb", "process_total_mb",
           "estimated_alloc_mb", "estimated_total_mb", "device", "fits", "seconds", "images_per_s", "error")


def results_frame(results: tuple) -> pd.DataFrame:
    """The tries as a DataFrame with the table's columns."""
    return pd.DataFrame([{c: r.to_dict()[c] for c in COLUMNS} for r in results], columns=list(COLUMNS))


def format_probe_table(report: ProbeReport) -> str:
    """The tries as a markdown table, with the chosen accum per member below it."""
    head = ["arch", "size", "accum", "micro bs", "peak alloc MB", "peak reserved MB", "process total MB",
            "est. alloc MB", "est. total MB", "device", "fits", "seconds", "images/s"]
    rows = [[r.arch, r.size, r.accum, r.micro_bs, format_mb(r.peak_allocated_mb), format_mb(r.peak_reserved_mb),
             format_mb(r.process_total_mb), format_mb(r.estimated_alloc_mb), format_mb(r.estimated_total_mb),
             r.device, fits_cell(r), f"{r.seconds:.1f}", format_mb(r.images_per_s)] for r in report.results]
    lines = markdown_table(head, rows)
    lines.append("")
    lines.append(f"budget {report.budget_gb:g} GB, {report.device}; chosen accum per member:")
    lines += [f"- {name}: {accum if accum else 'does not fit at any accum tried'}"
              for name, accum in report.chosen.items()]
    return "\n".join(lines)


def fits_cell(result: TryResult) -> str:
    """yes, OOM, error or no."""
    if result.fits:
        return "yes"
    return "OOM" if result.oom else "error" if result.error else "no"


def markdown_table(head: list, rows: list) -> list[str]:
    """The lines of a markdown table: a header, its rule, one line per row of cells."""
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + [
        "| " + " | ".join(str(c) for c in cells) + " |" for cells in rows]


def format_mb(value: float | None) -> str:
    """A whole number for a table cell; blank for a missing (None or NaN) figure."""
    return "" if value is None or math.isnan(value) else f"{value:.0f}"


def plot_results(report: ProbeReport, path: str | Path) -> Path:
    """A bar chart of each try's budgeted MB (fitting tries green) with the budget line, written atomically."""
    labels = [f"{r.arch}\n{r.size} accum {r.accum}" for r in report.results]
    values = [0 if math.isnan(r.budget_mb) else r.budget_mb for r in report.results]
    fig = Figure(figsize=(max(6, 1.2 * len(labels)), 4.5))
    ax = fig.subplots()
    ax.bar(range(len(values)), values, color=["tab:green" if r.fits else "tab:red" for r in report.results])
    ax.axhline(report.budget_gb * 1024, color="black", linestyle="--", label=f"budget {report.budget_gb:g} GB")
    ax.set_xticks(range(len(values)), labels, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("peak MB (" + y_label(report.device) + ")")
    ax.legend()
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    return Path(path)


def y_label(device: str) -> str:
    """What the bars measure on `device`."""
    if device == "cpu":
        return "CPU RSS"
    return "estimated GPU process total" if device.startswith("estimated") else "GPU process total"


def write_probe_outputs(report: ProbeReport, out: str | Path) -> list[Path]:
    """Write probe.csv, probe.md and probe.png into `out`; return their paths."""
    out = Path(out)
    return [atomic.write_csv(out / CSV_NAME, results_frame(report.results)),
            atomic.write_text(out / MARKDOWN_NAME, format_probe_table(report) + "\n"),
            plot_results(report, out / PLOT_NAME)]
