"""docs/study.md, the study's page, from its finished runs (one per world seed, `gemsft.report.study_runs`):
the claims' scoreboard with one verdict column per world seed and the claims whose verdict flips between
seeds, the verdict counts, the world's calibration targets against the measured values, and each run's
commit and wall time; and the README's one-line summary of it."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import pandas as pd

from gemsft.report import calibration
from gemsft.report.cells import DIGITS, MISSING
from gemsft.report.claims import INCONCLUSIVE, UNTESTABLE, VERDICTS, format_difference
from gemsft.report.study_runs import StudyRun

FLIPS, SAME = "flips", "same"
README_MARK = "study"  # README.md's line between <!-- study:start --> and <!-- study:end -->
_NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}


def ordered(runs: Sequence[StudyRun]) -> list[StudyRun]:
    """The runs by world seed; two runs of one seed would make two columns of the same name."""
    if not runs:
        raise ValueError("no study runs given")
    seeds = [r.world_seed for r in runs]
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:
        raise ValueError(f"two runs have world seed {twice[0]}: each run of the study needs its own seed")
    return sorted(runs, key=lambda r: r.world_seed)


def seed_title(seed: int) -> str:
    return f"world seed {seed}"


def forest_name(seed: int) -> str:
    """The file name of a run's forest plot in docs/."""
    return f"study_claims_forest_seed{seed}.png"


def verdict_cell(claim) -> str:
    """"supported: +0.48 [+0.40, +0.55]" (the difference A − B and its 95% interval) in the metric's digits; an
    untestable claim gives its reason instead."""
    if claim.verdict == UNTESTABLE:
        return f"{UNTESTABLE}: {claim.reason}" if claim.reason else UNTESTABLE
    if math.isnan(claim.difference):
        return claim.verdict
    return f"{claim.verdict}: {difference_text(claim)}"


def difference_text(claim) -> str:
    """"+0.48 [+0.40, +0.55]": the difference A − B and its 95% interval, in the metric's digits."""
    return format_difference(claim.difference, claim.ci_low, claim.ci_high, DIGITS.get(claim.metric, 1))


def _by_key(run: StudyRun) -> dict:
    return {(c.model, c.id): c for c in run.claims.itertuples(index=False)}


def _keys(runs: Sequence[StudyRun]) -> list[tuple[str, str]]:
    """Every (model, claim id), in the order of the first run that has it."""
    return list(dict.fromkeys(key for run in runs for key in _by_key(run)))


def agreement(verdicts: Sequence[str | None]) -> str:
    """FLIPS when two seeds disagree, SAME when every seed has the claim and agrees, MISSING when fewer
    than two seeds have it."""
    present = [v for v in verdicts if v is not None]
    if len(set(present)) > 1:
        return FLIPS
    return SAME if len(present) == len(verdicts) and len(present) > 1 else MISSING


def scoreboard(runs: Sequence[StudyRun]) -> pd.DataFrame:
    """One row per claim (and model, when the runs have several): its description, the verdict cell
    of each world seed, and whether the verdict flips between seeds (with more than one seed)."""
    runs = ordered(runs)
    tables = [_by_key(run) for run in runs]
    keys = _keys(runs)
    several_models = len({model for model, _ in keys}) > 1
    rows = []
    for key in keys:
        found = [table.get(key) for table in tables]
        first = next(c for c in found if c is not None)
        row = {"model": key[0]} if several_models else {}
        row["claim"] = f"{first.claim} (`{key[1]}`)"
        row.update({seed_title(run.world_seed): MISSING if c is None else verdict_cell(c)
                    for run, c in zip(runs, found)})
        if len(runs) > 1:
            row["across seeds"] = agreement([None if c is None else c.verdict for c in found])
        rows.append(row)
    columns = (["model"] if several_models else []) + ["claim", *(seed_title(r.world_seed) for r in runs)]
    return pd.DataFrame(rows, columns=columns + (["across seeds"] if len(runs) > 1 else []), dtype=object)


def flipped(runs: Sequence[StudyRun]) -> list[tuple[str, str]]:
    """The (model, claim id) whose verdict differs between world seeds."""
    tables = [_by_key(run) for run in ordered(runs)]
    return [key for key in _keys(runs)
            if agreement([None if key not in t else t[key].verdict for t in tables]) == FLIPS]


def verdict_counts(claims: pd.DataFrame) -> dict[str, int]:
    counts = Counter(claims["verdict"])
    return {verdict: counts.get(verdict, 0) for verdict in VERDICTS}


def counts_text(claims: pd.DataFrame) -> str:
    """"7 of 13 claims supported, 3 contradicted, 2 inconclusive, 1 untestable"."""
    counts = verdict_counts(claims)
    first, *rest = VERDICTS
    return f"{counts[first]} of {len(claims)} claims {first}, " + ", ".join(f"{counts[v]} {v}" for v in rest)


# Two-sided 5% test with 80% power: the smallest true difference a study detects is
# (z_0.975 + z_0.80) standard errors; the 95% interval is about 2 x 1.96 of them wide.
Z_TEST, Z_POWER = 1.959964, 0.841621


def detectable_difference(ci_low: float, ci_high: float) -> float:
    """The difference this run would detect with 80% power at the 5% level, from the width of its 95%
    interval (normal approximation to the paired bootstrap)."""
    return (Z_TEST + Z_POWER) * (ci_high - ci_low) / (2 * Z_TEST)


def power_table(runs: Sequence[StudyRun]) -> pd.DataFrame:
    """One row per claim: its metric and items and, per world seed, the smallest difference it could
    detect with 80% power ("—" where the claim got no interval)."""
    runs = ordered(runs)
    tables = [_by_key(run) for run in runs]
    rows = []
    for key in _keys(runs):
        found = [table.get(key) for table in tables]
        first = next(c for c in found if c is not None)
        counted = not (math.isnan(first.n_items) or math.isnan(first.n_seeds))  # an untestable claim may have none
        row = {"claim": f"`{key[1]}`", "metric": first.metric,
               "items x seeds": f"{int(first.n_items)} x {int(first.n_seeds)}" if counted else MISSING}
        for run, c in zip(runs, found):
            ok = c is not None and not (math.isnan(c.ci_low) or math.isnan(c.ci_high))
            digits = DIGITS.get(first.metric, 1)
            row[seed_title(run.world_seed)] = f"{detectable_difference(c.ci_low, c.ci_high):.{digits}f}" if ok else MISSING
        rows.append(row)
    return pd.DataFrame(rows, dtype=object)


def data_to_decide(difference: float, ci_low: float, ci_high: float) -> float:
    """How many times a claim's data (items x seeds) would bring the side of its 95% interval that
    faces 0 down to the observed difference, so that the interval just excludes 0, were the difference
    the true one and the interval to narrow as one over the square root of the data:
    (that side / |difference|)^2. Infinite for a difference of exactly 0."""
    if difference == 0:
        return math.inf
    side = difference - ci_low if difference > 0 else ci_high - difference
    return (side / abs(difference)) ** 2


def _fold_text(fold: float) -> str:
    if math.isinf(fold):
        return "∞"
    return f"{fold:.1f}x" if fold < 10 else f"{fold:,.0f}x"


def undecided_table(runs: Sequence[StudyRun]) -> pd.DataFrame:
    """One row per claim that is inconclusive under some world seed: per seed, its difference and the
    data that would decide it (`data_to_decide`); "—" where that seed's verdict is decisive or missing."""
    runs = ordered(runs)
    tables = [_by_key(run) for run in runs]
    rows = []
    for key in _keys(runs):
        found = [table.get(key) for table in tables]
        if not any(c is not None and c.verdict == INCONCLUSIVE for c in found):
            continue
        row = {"claim": f"`{key[1]}`"}
        for run, c in zip(runs, found):
            row[seed_title(run.world_seed)] = (
                f"{difference_text(c)}: {_fold_text(data_to_decide(c.difference, c.ci_low, c.ci_high))}"
                if c is not None and c.verdict == INCONCLUSIVE else MISSING)
        rows.append(row)
    return pd.DataFrame(rows, columns=["claim"] + [seed_title(r.world_seed) for r in runs], dtype=object)


def calibration_table(runs: Sequence[StudyRun]) -> pd.DataFrame:
    """One row per target (and model, when there are several): its range and, per world seed, the
    measured value and whether it is met. A run needs only `world_seed`, `summary` and `metrics` here
    (a calibration run has no claims to read)."""
    runs = ordered(runs)
    checks = [calibration.check(run.summary, metrics=run.metrics) for run in runs]
    keyed = [{(r.model, r.target): r for r in check.itertuples(index=False)} for check in checks]
    keys = list(dict.fromkeys(key for check in keyed for key in check))
    several_models = len({model for model, _ in keys}) > 1
    rows = []
    for key in keys:
        found = [check.get(key) for check in keyed]
        first = next(r for r in found if r is not None)
        row = {"model": key[0]} if several_models else {}
        row.update({"target": first.target, "range": first.range})
        for run, r in zip(runs, found):
            if r is None or r.status == calibration.NOT_MEASURED:
                row[seed_title(run.world_seed)] = calibration.NOT_MEASURED
            else:
                row[seed_title(run.world_seed)] = f"{r.measured}: {r.status}"
        rows.append(row)
    columns = (["model"] if several_models else []) + ["target", "range"]
    return pd.DataFrame(rows, columns=columns + [seed_title(r.world_seed) for r in runs], dtype=object)


def runs_table(runs: Sequence[StudyRun]) -> pd.DataFrame:
    return pd.DataFrame([{"world seed": run.world_seed, "commit": f"`{run.commit}`",
                          "config hash": f"`{run.config_hash}`", "run time": run.run_time,
                          "pretraining threads": run.pretrain_threads, "machine": run.machine}
                         for run in ordered(runs)], dtype=object)


def _undecided_text(runs: Sequence[StudyRun]) -> list[str]:
    table = undecided_table(runs)
    if table.empty:
        return []
    return [
        "Each inconclusive claim's difference and interval, and how many times the study's data (items x "
        "seeds) would make that difference just decisive, were it the true one and the interval to narrow "
        "as one over the square root of the data: (the side of the interval facing 0 / |difference|)². "
        "A planning figure, not evidence: a difference near 0 asks for data without end.",
        "",
        markdown(table),
        "",
    ]


def markdown(df: pd.DataFrame) -> str:
    # A "|" in a cell (a claim's reason) would end the cell.
    escaped = df.astype(str).map(lambda text: text.replace("|", r"\|"))
    return escaped.to_markdown(index=False, disable_numparse=True)


def _flip_verb(n: int) -> str:
    return "flips" if n == 1 else "flip"


def _seeds_text(runs: Sequence[StudyRun]) -> str:
    n = len(runs)
    return f"{_NUMBER_WORDS.get(n, n)} world seed{'s' if n > 1 else ''}"


def study_page(runs: Sequence[StudyRun]) -> str:
    """The whole of docs/study.md; the forest plots are referenced as docs/`forest_name(seed)`."""
    runs = ordered(runs)
    counts = [f"- {seed_title(run.world_seed).capitalize()}: {counts_text(run.claims)}." for run in runs]
    if len(runs) > 1:
        flips = len(flipped(runs))
        counts.append(f"- {flips} of {len(_keys(runs))} claims {_flip_verb(flips)} between the world seeds.")
    figures = "\n\n".join(f"![Forest plot of the claims, {seed_title(run.world_seed)}]({forest_name(run.world_seed)})"
                          for run in runs)
    return "\n".join([
        f"# The study: the paper's claims under {_seeds_text(runs)}",
        "",
        "<!-- Written by docs/update_study.py from finished study runs; edits by hand are overwritten. -->",
        "",
        "The study config ran once per world seed, each run in its own working directory. Each claim compares "
        "two runs A and B on one metric: a cell gives the verdict of that seed's run, the difference A − B and "
        "its 95% paired-bootstrap interval (the run's `results/claims.csv`). A claim whose verdict differs "
        f"between world seeds is marked \"{FLIPS}\".",
        "",
        "## Scoreboard",
        "",
        *counts,
        "",
        markdown(scoreboard(runs)),
        "",
        figures,
        "",
        "## Power",
        "",
        "The smallest difference A − B each claim's test detects with 80% power at the 5% level, "
        "(1.96 + 0.84) standard errors, the standard error read off the width of the claim's 95% "
        "interval. The design asked for 5 points on a 0-100 metric: a claim whose entry is above that "
        "could miss a 5-point effect, and its \"inconclusive\" is weak evidence of no effect. "
        "`items x seeds`: the items each seed pair shares, times the seed pairs (training seeds paired by "
        "value; the pre-trained model's one seed pairs with each seed of the other arm).",
        "",
        markdown(power_table(runs)),
        "",
        *_undecided_text(runs),
        "## Calibration",
        "",
        "The embedded world's calibration targets: the ranges the pre-trained model and CE should land in "
        "for the claims to be decidable (`gemsft.report.calibration`). A target is met when the point "
        "estimate lies in its range, bounds included (± is the larger side of the 95% bootstrap interval; "
        "the run's `results/summary.csv`).",
        "",
        markdown(calibration_table(runs)),
        "",
        "## Runs",
        "",
        markdown(runs_table(runs)),
        "",
        "Written by `.venv/bin/python docs/update_study.py --run DIR [--run DIR ...] [--time FILE ...]`; "
        "[pipeline.md](pipeline.md#the-study-two-world-seeds) says how to run the study.",
        "",
    ])


def readme_line(runs: Sequence[StudyRun], page: str = "docs/study.md") -> str:
    """The README's summary: the counts of every world seed (once when they agree) and the flips."""
    runs = ordered(runs)
    texts = [counts_text(run.claims) for run in runs]
    link = f"see [{page}]({page})"
    if len(runs) == 1:
        return f"{texts[0]} under the study ({seed_title(runs[0].world_seed)}): {link}."
    flips = len(flipped(runs))
    flip_text = f"{flips} claim{'' if flips == 1 else 's'} {_flip_verb(flips)} between them"
    if len(set(texts)) == 1:
        return f"{texts[0]} under the study ({_seeds_text(runs)}; {flip_text}): {link}."
    per_seed = "; ".join(f"{seed_title(run.world_seed)}: {text}" for run, text in zip(runs, texts))
    return f"Under the study ({_seeds_text(runs)}): {per_seed}; {flip_text}: {link}."
