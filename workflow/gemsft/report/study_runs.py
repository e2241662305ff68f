"""A finished study run as docs/study.md reads it: the verdicts of its claims (results/claims.csv), its
summary (for the calibration targets), its forest plot, its world seed (the world's own record of its
config, results/data/world.json), the commit its report was made at (a table's provenance) and, when
benchmarks/dag_time.py timed it, its wall time. A file that is missing or malformed is an error naming
it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from gemsft.report.cells import Cells
from gemsft.report.claims import load_claims
from gemsft.report.doc_pages import DocInputError, commit_text, input_error, read_json_object, require_file
from gemsft.report.summary_reader import read_csv as read_summary

CLAIMS = "results/claims.csv"
SUMMARY = "results/summary.csv"
METRICS = "results/metrics.csv"  # per training seed: the calibration's per-seed targets read it
WORLD = "results/data/world.json"
FOREST = "figures/claims_forest.png"
# The scoreboard table's provenance names the commit the verdicts were made at; any table's will do
# when it has none (every table of a run is made by the same report stage).
PROVENANCE = "results/tables/claims.provenance.json"
# The pre-trained model's metrics record the torch threads it was trained on (pretrain.threads): the
# thread count is part of the model, so the page shows it beside the run.
BASE_METRICS = "results/base"
TABLES = "results/tables"

NOT_RECORDED = "not recorded"


class StudyRun(NamedTuple):
    world_seed: int
    claims: pd.DataFrame
    summary: pd.DataFrame
    metrics: pd.DataFrame
    forest: Path
    commit: str
    config_hash: str
    run_time: str
    pretrain_threads: str
    machine: str = "not recorded"


def read_claims(path: str | Path) -> pd.DataFrame:
    """results/claims.csv as `gemsft.report.claims` reads it (numbers as floats, NaN where empty, as for
    an untestable claim), with one row per model and claim."""
    path = require_file(path, "the run has no claims (did its `claims` rule run?)")
    try:
        df = load_claims(path)
    except (ValueError, UnicodeDecodeError) as err:  # pandas' ParserError and EmptyDataError are ValueErrors
        raise input_error(path, err) from None
    if df.empty:
        raise DocInputError(f"{path} has no claims")
    twice = df[df.duplicated(["model", "id"])]
    if len(twice):
        raise DocInputError(f"{path} has claim {twice.iloc[0]['id']!r} of model {twice.iloc[0]['model']!r} twice")
    return df


def read_world_seed(path: str | Path) -> int:
    world = read_json_object(path, "the study runs on the embedded world (data.source: world)")
    seed = (world.get("config") or {}).get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise DocInputError(f"{path} has no integer config.seed")
    return seed


def read_provenance(run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    candidates = [run_dir / PROVENANCE, *sorted((run_dir / TABLES).glob("*.provenance.json"))]
    found = next((p for p in candidates if p.is_file()), run_dir / PROVENANCE)
    return read_json_object(found, "the run's report tables were not made")


_SECONDS = re.compile(r"(\d+(?:\.\d+)?) s\b")
_CPUS = re.compile(r"on (\d+) CPUs?\b")


def read_run_time(path: str | Path | None) -> str:
    """The wall time from the first line of a benchmarks/dag_time.py result ("... on 2 CPUs: 424.3 s
    (7.07 min)"), as "7.1 min on 2 CPUs"; "not recorded" without a file."""
    if path is None:
        return NOT_RECORDED
    path = require_file(path, "give a benchmarks/dag_time.py result file")
    lines = path.read_text(encoding="utf-8").splitlines()
    first = lines[0] if lines else ""
    seconds = _SECONDS.search(first)
    if seconds is None:
        raise DocInputError(f"{path}: its first line gives no wall time in seconds (\"... 424.3 s ...\")")
    cpus = _CPUS.search(first)
    return f"{float(seconds.group(1)) / 60:.1f} min" + (f" on {cpus.group(1)} CPUs" if cpus else "")


def read_machine(path: str | Path | None) -> str:
    """The machine line benchmarks/dag_time.py writes last ("machine: AMD EPYC (family 25, model 17);
    torch ..., CPU capability AVX512"), without its label; "not recorded" without a file or a line.
    The pre-trained model's floats depend on the CPU's kernels, so the page shows it beside the run."""
    if path is None:
        return NOT_RECORDED
    lines = require_file(path, "give a benchmarks/dag_time.py result file").read_text(encoding="utf-8").splitlines()
    found = [line.removeprefix("machine:").strip() for line in lines if line.startswith("machine:")]
    return found[-1] if found and found[-1] else NOT_RECORDED


def read_pretrain_threads(run_dir: str | Path) -> str:
    """The threads the run's pre-trained model was trained on, "not recorded" for a run made before its
    metrics recorded them (or one that loaded a pretrained model)."""
    found = sorted((Path(run_dir) / BASE_METRICS).glob("*.metrics.json"))
    if not found:
        return NOT_RECORDED
    threads = read_json_object(found[0], "the pretraining metrics").get("threads")
    return str(threads) if isinstance(threads, int) and not isinstance(threads, bool) else NOT_RECORDED


def read_summary_checked(path: str | Path) -> pd.DataFrame:
    path = require_file(path, "the run's summary was not made")
    try:
        summary = read_summary(path)
        Cells(summary)  # the calibration looks cells up: no rows or a duplicate row is this file's fault
    except (ValueError, UnicodeDecodeError) as err:
        raise input_error(path, err) from None
    return summary


def read_metrics_checked(path: str | Path) -> pd.DataFrame:
    """results/metrics.csv (`gemsft.report.metrics_table`): one row per run, seed and metric."""
    path = require_file(path, "the run's metrics table was not made")
    try:
        metrics = pd.read_csv(path, dtype={"model": str, "objective": str, "beta": str, "task": str,
                                           "metric": str})
    except (ValueError, UnicodeDecodeError) as err:
        raise input_error(path, err) from None
    missing = [c for c in ("model", "objective", "beta", "seed", "task", "metric", "k", "value")
               if c not in metrics]
    if missing:
        raise DocInputError(f"{path} lacks column(s) {', '.join(missing)}")
    for column in ("seed", "value"):
        if pd.to_numeric(metrics[column], errors="coerce").isna().any():
            raise DocInputError(f"{path} has a row whose {column} is not a number")
    return metrics


def read_run(run_dir: str | Path, time_file: str | Path | None = None) -> StudyRun:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DocInputError(f"{run_dir} is not a directory (give a finished study run's working directory)")
    provenance = read_provenance(run_dir)
    return StudyRun(
        world_seed=read_world_seed(run_dir / WORLD),
        claims=read_claims(run_dir / CLAIMS),
        summary=read_summary_checked(run_dir / SUMMARY),
        metrics=read_metrics_checked(run_dir / METRICS),
        forest=require_file(run_dir / FOREST, "the run did not draw the claims' forest plot"),
        commit=commit_text(provenance),
        config_hash=str(provenance.get("config_hash") or "unknown"),
        run_time=read_run_time(time_file),
        pretrain_threads=read_pretrain_threads(run_dir),
        machine=read_machine(time_file),
    )
