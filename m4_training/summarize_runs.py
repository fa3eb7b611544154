"""One table for a set of train.py runs, e.g. a leave-one-domain-out or leave-one-generator-out sweep:

    python -m m4_training.summarize_runs --runs outputs/lodo/* --output outputs/lodo/summary.md

Each row is read from a run's metrics.json and training_config.json. For a hold-out run the row shows the
held-out slice (the validation documents of the held-out domain, or the held-out generator's machine documents
with every human validation document), for the transformer and the TF-IDF baseline; AUROC does not depend on the
threshold, which was chosen on that same validation set. A second table lists every test set of every run. A
run without metrics.json (failed or unfinished) is listed as such rather than left out.
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any

from data_loaders import canonical_generator
from m4_training.cli import CommandLineParser, UserError, arg_help, check_output_paths, one_line, run_cli, setup_logging
from m4_training.files import check_output_file, read_json, write_failure, write_text
from m4_training.reports import FLOW_NAMES, format_table, markdown

logger = logging.getLogger(__name__)
METRICS_HEADER = ["F1", "AUROC", "FPR", "TPR@5%", "TPR@1%", "baseline F1", "baseline AUROC"]
RUN_HEADER = ["run", "split", "held out", "val human", "val machine", "threshold", *METRICS_HEADER]
TEST_HEADER = ["run", "test set", "n", "overlap removed", *METRICS_HEADER]


@dataclass
class SummarizeArguments:
    runs: list[str] = field(**arg_help("output directories of train.py runs (e.g. one per held-out domain)"))
    output: str | None = field(default=None, **arg_help("also write the Markdown tables to this file"))

    def __post_init__(self) -> None:
        if self.output:
            # `--runs outputs/lodo/* --output outputs/lodo/summary.md` run again: the glob now names the summary too.
            written = Path(self.output).resolve()
            self.runs = [run for run in self.runs if Path(run).resolve() != written]
            if not self.runs:
                raise UserError("--runs names no run directory besides --output")
        check_output_paths({"--output": self.output}, {"--runs": self.runs})


def held_out(settings: dict[str, Any], flow: str) -> tuple[str | None, str | None]:
    """(breakdown key, value) of a run's held-out slice; (None, None) for a stratified run (all validation)."""
    split = settings["arguments"]["split"]
    if flow == "domain_holdout":
        return "by_domain", split["val_domain"]
    if flow == "generator_holdout":
        return "by_generator", canonical_generator(split["val_generator"])
    return None, None


def _slice(document: dict[str, Any], key: str | None, value: str | None) -> dict[str, Any]:
    """The held-out domain's (generator's) part of a document-metrics dict, or all of it."""
    return document if key is None else document[key].get(value, {})


def run_rows(run_dir: Path) -> tuple[list[Any], list[list[Any]]]:
    """The run's row of the hold-out table and its rows of the test-set table."""
    metrics = read_json(run_dir / "metrics.json")
    settings = read_json(run_dir / "training_config.json")
    files = {"metrics.json": metrics, "training_config.json": settings}
    if missing := [name for name, value in files.items() if value is None]:
        return [run_dir.name, f"not finished (no {' or '.join(missing)})", *[None] * (len(RUN_HEADER) - 2)], []
    if wrong := [name for name, value in files.items() if not isinstance(value, dict)]:
        raise UserError(f"--runs {run_dir}: {wrong[0]} is not a JSON object (not written by train.py?)")
    flow = settings["data_summary"]["split_flow"]
    key, value = held_out(settings, flow)
    part = _slice(metrics["document"], key, value)
    baseline = _slice(metrics["baseline"]["document"], key, value) if "baseline" in metrics else {}
    row = [run_dir.name, FLOW_NAMES.get(flow, flow), value or "-", part.get("n_human"), part.get("n_machine")]
    row += [metrics["threshold"]["value"], *_metric_cells(part, baseline)]
    tests = [
        [run_dir.name, name, result.get("document", {}).get("n", 0), result["test_overlap_removed"]]
        + _metric_cells(result.get("document", {}), result.get("baseline", {}).get("document", {}))
        for name, result in metrics.get("test", {}).items()
    ]
    return row, tests


def _metric_cells(document: dict[str, Any], baseline: dict[str, Any]) -> list[Any]:
    """The METRICS_HEADER cells ('-' where a run from before TPR@FPR was reported lacks them)."""
    transformer = [document.get(k) for k in ("f1_macro", "auroc", "fpr_human", "tpr_at_fpr_5", "tpr_at_fpr_1")]
    return transformer + [baseline.get(k) for k in ("f1_macro", "auroc")]


def _mean_row(rows: list[list[Any]], first_metric: int) -> list[Any]:
    """The mean of each metric column over the rows that have a number there (NaN, e.g. an AUROC of one class,
    is left out and its runs named)."""
    means = []
    for column in range(first_metric, len(rows[0])):
        values = [row[column] for row in rows if isinstance(row[column], float)]
        if nan_runs := [row[0] for row in rows if isinstance(row[column], float) and math.isnan(row[column])]:
            logger.warning("mean of %s leaves out NaN of: %s", RUN_HEADER[column], ", ".join(nan_runs))
        values = [value for value in values if not math.isnan(value)]
        means.append(mean(values) if values else None)
    return ["mean", *[None] * (first_metric - 1), *means]


def summary(run_dirs: list[Path]) -> str:
    """The Markdown tables for these runs."""
    rows, tests = [], []
    for run_dir in run_dirs:
        try:
            row, test_rows = run_rows(run_dir)
        except (KeyError, TypeError, AttributeError) as error:
            raise UserError(
                f"--runs {run_dir}: metrics.json or training_config.json lacks {one_line(error)} (not written by "
                "this version of train.py?); leave the run out or train it again"
            ) from error
        rows.append(row)
        tests += test_rows
    finished = [row for row in rows if isinstance(row[5], float)]
    if len(finished) > 1:
        rows.append(_mean_row(finished, RUN_HEADER.index("F1")))
    paragraphs = [
        "Validation documents of the held-out domain or generator (all validation documents for a stratified run), "
        "at each run's threshold, which was chosen on that validation set; AUROC does not depend on it.",
        format_table(RUN_HEADER, rows, markdown=True),
    ]
    if tests:
        paragraphs += ["Test sets (scored at each run's validation threshold):", format_table(TEST_HEADER, tests, True)]
    return markdown(paragraphs)


def summarize(argv: list[str] | None = None) -> int:
    parser = CommandLineParser([SummarizeArguments], prog="python -m m4_training.summarize_runs", description=__doc__)
    (args,) = parser.parse_dataclasses(argv)
    run_dirs = list({Path(run).resolve(): Path(run) for run in args.runs}.values())  # a run named twice counts once
    for run_dir in run_dirs:
        if not run_dir.is_dir():
            raise UserError(f"--runs {run_dir}: not a directory (`DIR/*/` names only the directories in DIR)")
    if args.output:
        check_output_file(args.output, "--output")
    text = summary(run_dirs)
    if args.output:
        try:
            write_text(args.output, text)
        except OSError as error:
            if message := write_failure(error, args.output):
                raise UserError(message) from error
            raise
    sys.stdout.write(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    return run_cli(lambda: summarize(argv))


if __name__ == "__main__":
    sys.exit(main())
