"""Every rule script writes its outputs through an atomic writer (docs/guarantees.md: "No output looks
complete after a failure"), checked statically: each workflow/scripts/*.py is parsed with `ast`, and
every use of a `snakemake.output` path must reach one of the writers listed in AUDITED_WRITERS (or a
reader of NOT_WRITING), through nothing but path arithmetic. `open(sm.output[0], "w")`, a method of a
path (`.write_text`), a library's own writer (`df.to_csv`) or the snakemake object passed whole are
violations. Each audited writer's own code is checked to make the atomic call its entry names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "workflow" / "scripts"
PACKAGE = REPO / "workflow"

# The writers a script may hand an output path, as the scripts import them, with the audit: the
# function that writes (where it is defined) and the calls in its body that make the write atomic.
# gemsft.files.atomic_path writes under a temporary sibling and renames it when complete.
AUDITED_WRITERS = {
    "gemsft.files.atomic_path": ("gemsft.files.atomic_path", ["os.replace"]),
    "gemsft.files.write_json": ("gemsft.files.write_json", ["atomic_path"]),
    "gemsft.files.write_jsonl": ("gemsft.files.write_jsonl", ["atomic_path"]),
    "gemsft.sample.plan.write_samples": ("gemsft.sample.plan.write_samples", ["files.write_jsonl"]),
    "gemsft.evaluate.stage.write_stage": ("gemsft.evaluate.stage.write_stage", ["files.write_json"]),
    "gemsft.data.world.write_world": ("gemsft.data.world.build.write_world", ["files.atomic_path"]),
    "gemsft.data.write_real_data": ("gemsft.data.write.write_real_data", ["files.atomic_path"]),
    "gemsft.pretrain.base_model.pretrain": ("gemsft.pretrain.base_model.pretrain",
                                            ["files.atomic_path", "files.write_json"]),
    # train.py: the finetune task (gemsft.train.launch.TASKS), here or in each launched process.
    "gemsft.train.launch.run": ("gemsft.train.sft.finetune", ["files.atomic_path", "files.write_json"]),
    "gemsft.score.reward_model.train_reward_model": ("gemsft.score.reward_model.train_reward_model",
                                                     ["files.atomic_path", "files.write_json"]),
    "gemsft.score.chat_quality.write_chat_quality": ("gemsft.score.chat_quality.write_chat_quality",
                                                     ["files.write_jsonl", "write_stage"]),
    "gemsft.evaluate.diversity.write_diversity": ("gemsft.evaluate.diversity.write_diversity",
                                                  ["write_stage", "files.write_json"]),
    "gemsft.evaluate.alpaca_judge.write_alpaca_eval": ("gemsft.evaluate.alpaca_judge.write_alpaca_eval",
                                                       ["files.write_json", "write_stage"]),
    # knowledge and model_stats stages; lm-eval's results and samples in evaluate_tasks (below).
    "gemsft.evaluate.model_eval.evaluate_model": ("gemsft.evaluate.model_eval.evaluate_model", ["write_stage"]),
    "gemsft.report.verdicts.write_claims": ("gemsft.report.verdicts.write_claims", ["files.atomic_path"]),
    "gemsft.report.summary.write_summary": ("gemsft.report.summary.write_summary", ["files.atomic_path"]),
    "gemsft.report.metrics_table.write_metrics_table": ("gemsft.report.metrics_table.write_metrics_table",
                                                        ["files.atomic_path"]),
    "gemsft.report.table_files.write_table": ("gemsft.report.table_files.write_table", ["atomic_path"]),
    # Every format rendered to its own temporary file, then all renamed (all formats or none).
    "gemsft.report.figures.save": ("gemsft.report.figures.save", ["tempfile.mkstemp", "os.replace"]),
    "gemsft.report.figures.plotted.write_plotted": ("gemsft.report.figures.plotted.write_plotted", ["atomic_path"]),
    # The whole task directory under a temporary name, renamed once every YAML and data file is in it.
    "gemsft.data.leaderboard.write_leaderboard_tasks": ("gemsft.data.leaderboard.write_leaderboard_tasks",
                                                        ["files.atomic_path"]),
}
# Further functions the audit above relies on (evaluate_model's lm-eval outputs).
AUDITED_HELPERS = {"gemsft.evaluate.forgetting.evaluate_tasks": ["files.atomic_path"]}
# Calls that take an output path without writing it.
NOT_WRITING = {"gemsft.files.read_json", "gemsft.files.read_jsonl", "print",
               "gemsft.rule_script.start"}  # start: the snakemake object, for its log and threads
# Calls that turn an output path into another path (or a container of paths): followed further.
PATH_BUILDERS = {"pathlib.Path", "str", "os.fspath", "os.path.join", "list", "tuple", "dict", "zip", "sorted"}
# Methods of a path that give a path; `keys` gives the outputs' names.
PATH_METHODS = {"with_suffix", "with_name", "joinpath"}
NAME_METHODS = {"keys"}


# --------------------------------------------------------------------------------------- the checker

def imported_names(tree: ast.Module) -> dict[str, str]:
    """{name in the script: qualified name} for every import, wherever it is (sample.py imports
    under `if __name__ == "__main__":`)."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names |= {a.asname or a.name: f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.asname or a.name.split(".")[0]: a.name if a.asname else a.name.split(".")[0]
                      for a in node.names}
    return names


def qualified(func: ast.expr, imports: dict[str, str]) -> str:
    """`files.write_jsonl` -> gemsft.files.write_jsonl; an unresolved call is its source text."""
    if isinstance(func, ast.Name):
        return imports.get(func.id, func.id)
    if isinstance(func, ast.Attribute):
        return f"{qualified(func.value, imports)}.{func.attr}"
    return ast.unparse(func)


def output_violations(source: str, name: str) -> tuple[list[str], int]:
    """(violations, number of output uses checked) of one rule script: each violation one line,
    "name:line: `expression` reaches `call`", the expression as handed to the call."""
    tree = ast.parse(source)
    imports = imported_names(tree)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    handles = {"snakemake"}  # the object Snakemake injects, and names bound to it (sm = snakemake)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Name) and node.value.id == "snakemake":
            handles |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    tainted: set[str] = set()  # names bound to an output path
    violations, checked, seen = [], 0, set()

    def follow(node: ast.AST, origin: ast.AST) -> None:
        """Walk up from an output path until it is written, read, named, or escapes."""
        nonlocal checked
        while True:
            where = f"{name}:{origin.lineno}: `{ast.unparse(node)}`"  # the expression handed on
            parent = parents.get(node)
            if isinstance(parent, (ast.Subscript, ast.Attribute)) and parent.value is node:
                call = parents.get(parent)
                if isinstance(parent, ast.Attribute) and isinstance(call, ast.Call) and call.func is parent:
                    if parent.attr in NAME_METHODS:
                        return
                    if parent.attr not in PATH_METHODS:
                        violations.append(f"{where} reaches `.{parent.attr}()`")
                        return
                    node = call
                    continue
                node = parent  # sm.output.x, sm.output[x], path.parent
            elif isinstance(parent, ast.Call) and node is not parent.func:
                callee = qualified(parent.func, imports)
                if callee in AUDITED_WRITERS or callee in NOT_WRITING:
                    checked += callee in AUDITED_WRITERS
                    return
                if callee not in PATH_BUILDERS:
                    violations.append(f"{where} reaches `{callee}`")
                    return
                node = parent
            elif isinstance(parent, (ast.keyword, ast.Starred, ast.BinOp, ast.Tuple, ast.List, ast.Set, ast.Dict,
                                     ast.comprehension, ast.ListComp, ast.GeneratorExp, ast.SetComp, ast.DictComp,
                                     ast.FormattedValue, ast.JoinedStr)):
                if isinstance(parent, ast.comprehension) and node is parent.iter:  # [... for p in sm.output]
                    tainted.update(n.id for n in ast.walk(parent.target) if isinstance(n, ast.Name))
                node = parent
            elif isinstance(parent, ast.Assign) and node is parent.value or isinstance(parent, ast.For) \
                    and node is parent.iter:
                # Its uses are followed in turn.
                targets = parent.targets if isinstance(parent, ast.Assign) else [parent.target]
                tainted.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
                return
            elif isinstance(parent, ast.Expr):  # a value thrown away
                return
            else:
                violations.append(f"{where} is used in `{ast.unparse(parent) if parent else 'the module'}`")
                return

    changed = True
    while changed:  # until no newly tainted name has uses left to follow
        changed = False
        for node in ast.walk(tree):
            if node in seen:
                continue
            if isinstance(node, ast.Attribute) and node.attr == "output" and isinstance(node.value, ast.Name) \
                    and node.value.id in handles:
                origin = node
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in tainted:
                origin = node
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in handles:
                # The snakemake object itself: only its attributes, or `start(snakemake)`, or an alias.
                parent = parents.get(node)
                if isinstance(parent, ast.Attribute) or (isinstance(parent, ast.Assign) and parent.value is node):
                    continue
                origin = node
            else:
                continue
            seen.add(node)
            changed = True
            follow(origin, origin)
    return violations, checked


def function_calls(qualname: str) -> set[str]:
    """The calls (as source text: `files.atomic_path`, `os.replace`) in the body of a function of the
    package, read from its source file without importing it."""
    module, function = qualname.rsplit(".", 1)
    path = PACKAGE / Path(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    tree = ast.parse(path.read_text())
    definition = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function), None)
    assert definition is not None, f"{qualname}: no function {function} in {path.relative_to(REPO)}"
    return {ast.unparse(n.func) for n in ast.walk(definition) if isinstance(n, ast.Call)}


# --------------------------------------------------------------------------------------- the tests

RULE_SCRIPTS = sorted(SCRIPTS.glob("*.py"))


@pytest.mark.parametrize("script", RULE_SCRIPTS, ids=[p.stem for p in RULE_SCRIPTS])
def test_a_rule_script_writes_its_outputs_only_through_audited_atomic_writers(script):
    violations, checked = output_violations(script.read_text(), script.name)
    assert violations == [], "\n".join(violations)
    assert checked > 0, f"{script.name}: no output path reaches a writer; is its snakemake object named otherwise?"


def audits():
    for writer, (function, calls) in AUDITED_WRITERS.items():
        yield writer, function, calls
    for function, calls in AUDITED_HELPERS.items():
        yield function, function, calls


@pytest.mark.parametrize("writer, function, calls", list(audits()), ids=[a[0] for a in audits()])
def test_an_audited_writer_makes_its_atomic_call(writer, function, calls):
    made = function_calls(function)
    assert set(calls) <= made, f"{writer}: {function} no longer calls {', '.join(sorted(set(calls) - made))}"


GOOD = """
from pathlib import Path
from gemsft import files
from gemsft.rule_script import start
start(snakemake)
sm = snakemake
files.write_json(sm.output.stage, {})
stem = Path(sm.output[1]).with_suffix("")
files.write_jsonl(stem.parent / "rows.jsonl", [])
print(files.read_json(Path(sm.output[0]) / "x"), list(sm.output.keys()))
"""


@pytest.mark.parametrize("bad, reaches", [
    ('open(snakemake.output[0], "w").write("x")', "reaches `open`"),
    ('from pathlib import Path\nsm = snakemake\nPath(sm.output.csv).write_text("x")', "reaches `.write_text()`"),
    ("import pandas as pd\npd.DataFrame().to_csv(snakemake.output[0])", "reaches `pd.DataFrame().to_csv`"),
    ("import shutil\nout = snakemake.output.model\nshutil.copytree('src', out)", "`out` reaches `shutil.copytree`"),
    ("for path in snakemake.output:\n    open(path, 'w')", "`path` reaches `open`"),
    ("[open(p, 'w') for p in snakemake.output]", "`p` reaches `open`"),
    ("def main(job):\n    pass\nmain(snakemake)", "`snakemake` reaches `main`"),
], ids=["open", "path_method", "library_writer", "through_a_name", "through_a_loop", "through_a_comprehension",
        "object_passed_whole"])
def test_the_check_finds_a_write_that_bypasses_the_atomic_writers(bad, reaches):
    """GOOD uses every allowed form; each bad line added to it is exactly one violation, on its line."""
    assert output_violations(GOOD, "good.py") == ([], 2)  # write_json and write_jsonl
    violations, _ = output_violations(GOOD + bad, "bad.py")
    assert len(violations) == 1 and reaches in violations[0], violations
    line = int(violations[0].split(":")[1])
    assert line > len(GOOD.splitlines()), violations  # the bad script's line, not one of GOOD's
