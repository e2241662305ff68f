"""Write the measured numbers of docs/benchmarks.md and the README's time sentence from benchmarks/results/.

Usage: .venv/bin/python docs/update_benchmarks.py [--results DIR] [--docs DIR] [--readme FILE]

Reads the result files the benchmark scripts wrote (dag_time.py, and for the study
`dag_time.py --configfile config/study.yaml --world-seed N --out benchmarks/results/study_time_seedN.txt`;
env_time.py, import_cost.py, sandbox_bench.py, code_eval_bench.py, metrics_bench.py, self_bleu_equality.py,
regenerate_figures.py), each of which names the commit it measured, and rewrites what lies between the markers <!-- time:start/end --> and
<!-- measured:start/end --> in docs/benchmarks.md and <!-- times:start/end --> in the README. Nothing is
written unless every file reads.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from gemsft.report import benchmark_page as page
from gemsft.report.doc_pages import DocInputError, replace_marked, require_file

REPO = Path(__file__).resolve().parents[1]
STUDY_SEEDS = (0, 1)


def write(results: Path, docs: Path, readme: Path) -> None:
    dag = page.read_dag_time(results / page.DAG_TIME)
    studies = {seed: page.read_dag_time(results / page.STUDY_TIME.format(seed=seed)) for seed in STUDY_SEEDS
               if (results / page.STUDY_TIME.format(seed=seed)).is_file()}
    env = page.read_env_time(results / page.ENV_TIME)
    imports = page.read_import_cost(results / page.IMPORT_COST)
    sandbox = page.read_sandbox(results / page.SANDBOX)
    code_eval = page.read_code_eval(results / page.CODE_EVAL)
    metrics = page.read_metrics(results / page.METRICS)
    regenerate = page.read_regenerate(results / page.REGENERATE)
    equality = page.read_equality(results / page.EQUALITY)
    bench_path = require_file(docs / "benchmarks.md", "give the docs directory")
    bench = bench_path.read_text(encoding="utf-8")
    bench = replace_marked(bench, page.TIME_MARK, "\n" + page.time_section(dag, studies, env, imports) + "\n",
                           where=str(bench_path))
    bench = replace_marked(bench, page.MEASURED_MARK, "\n" + page.measured_table(sandbox, metrics, regenerate, equality, code_eval) + "\n",
                           where=str(bench_path))
    readme_text = require_file(readme, "give the README to update").read_text(encoding="utf-8")
    link = Path(os.path.relpath(bench_path, readme.parent)).as_posix()
    readme_text = replace_marked(readme_text, page.README_MARK, page.readme_times(env, dag, link), where=str(readme))
    bench_path.write_text(bench, encoding="utf-8")
    readme.write_text(readme_text, encoding="utf-8")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--docs", type=Path, default=REPO / "docs")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    args = parser.parse_args(argv)
    try:
        write(args.results, args.docs, args.readme)
    except DocInputError as err:
        raise SystemExit(f"update_benchmarks: {err}") from None
    print(f"{args.docs / 'benchmarks.md'} and {args.readme} updated from {args.results}")


if __name__ == "__main__":
    main()
