"""Math family: one-step word problems with step-by-step solutions ending in "The answer is: N"
(the world's GSM8K)."""

from __future__ import annotations

import itertools
import random

from gemsft.data.world.common import Task
from gemsft.data.world.lexicon import MATH_ITEMS, NAMES
from gemsft.math_answer import extract_math_answer_with_source

# The paper's GSM8K prompt (Appendix F.3); SFT and evaluation use it, pretraining uses the QA frame.
PAPER_PROMPT = ('Your task is to answer the question below. Give step-by-step reasoning before you answer, '
                'and when you\'re ready to answer, please use the format "The answer is: ..."\n'
                'Question: {question}')

QUESTIONS = {
    "add": "{name} has {a} {item}s. {name} gets {b} more {item}s. How many {item}s does {name} have now?",
    "sub": "{name} has {a} {item}s. {name} gives {b} {item}s away. How many {item}s does {name} have now?",
    "mul": "{name} buys {a} bags with {b} {item}s in each bag. How many {item}s does {name} buy?",
}
SYMBOL = {"add": "+", "sub": "-", "mul": "*"}
SOLUTIONS = (
    "{a} {op} {b} = {c}. The answer is: {c}",
    "{name} starts with {a} and we compute {a} {op} {b} = {c}. The answer is: {c}",
    "We need {a} {op} {b}, which is {c}. The answer is: {c}",
)
SFT_VOICE = "Let's think step by step. {a} {op} {b} = {c}. The answer is: {c}"
# The pretraining voices: SOLUTIONS, and with `world.math.pretrain_sft_voice` the SFT voice as well,
# as web text holds step-by-step solutions. Without it SFT must teach the tiny model to copy the
# first operand after a prefix it never saw, and CE's greedy accuracy hung on the training seed and
# the machine (docs/calibration.md, fourth calibration).
PRETRAIN_VOICES = (*SOLUTIONS, SFT_VOICE)


# Operands up to two digits (`world.math.max_operand` for sums and differences; products stay at 9 x
# 9): pretraining states each arithmetic fact a few times at most, so a question's difficulty is graded
# by how often (if ever) its fact was seen.
MAX_OPERAND = 19  # the default before the fourth calibration


def _operands(op: str, max_operand: int = MAX_OPERAND):
    if op == "mul":
        return itertools.product(range(2, 10), range(2, 10))
    if op == "sub":
        return ((a, b) for a in range(2, max_operand + 1) for b in range(1, a))
    return itertools.product(range(1, max_operand + 1), range(1, max_operand + 1))


def _result(op: str, a: int, b: int) -> int:
    return {"add": a + b, "sub": a - b, "mul": a * b}[op]


def build_tasks(rng: random.Random, n_eval: int, n_sft: int, n_pretrain: int,
                pretrain_sft_voice: bool = False, max_operand: int = MAX_OPERAND) -> list[Task]:
    """Distinct questions, shuffled; the first n_eval are test, the rest feed SFT and pretraining. A
    question's pretraining solution is in one of SOLUTIONS' voices, or of PRETRAIN_VOICES' with
    `pretrain_sft_voice`, each equally likely."""
    voices = len(PRETRAIN_VOICES) if pretrain_sft_voice else len(SOLUTIONS)
    combos = [(op, a, b, name, item) for op in QUESTIONS for a, b in _operands(op, max_operand)
              for name in NAMES for item in MATH_ITEMS]
    needed = n_eval + n_sft + n_pretrain
    if needed > len(combos):
        raise ValueError(f"world.math asks for {needed} questions but the world has only {len(combos)}")
    tasks = []
    for i, (op, a, b, name, item) in enumerate(rng.sample(combos, needed)):
        c = _result(op, a, b)
        question = QUESTIONS[op].format(name=name, a=a, b=b, item=item)
        fields = {"name": name, "a": a, "b": b, "c": c, "op": SYMBOL[op]}
        split = "test" if i < n_eval else ("sft" if i < n_eval + n_sft else "pretrain")
        tasks.append(Task(id=f"math/{i}", family="math", kind=op, slot=str(c), request=question,
                          p={f"s{j}": 1.0 / voices for j in range(voices)}, split=split,
                          extra={"answer": c, "fields": fields}))
    return tasks


def pretrain_response(task: Task, key: str, rng: random.Random) -> str:
    return PRETRAIN_VOICES[int(key[1:])].format(**task.extra["fields"])


def sft_response(task: Task, key: str | None = None) -> str:
    return SFT_VOICE.format(**task.extra["fields"])


def unacceptable_response(task: Task, rng: random.Random) -> str:
    fields = dict(task.extra["fields"])
    fields["c"] = fields["c"] + rng.choice([-2, -1, 1, 2])
    return SFT_VOICE.format(**fields)


def extract_answer(text: str) -> float | None:
    """The number after the last "The answer is" of a response (`gemsft.math_answer`, the
    extraction of every math scorer), or None: the world asks for the marker, so no fallback."""
    value = extract_math_answer_with_source(text).marker_value
    return None if value is None else float(value)


def judge(record: dict, text: str) -> str | None:
    value = extract_answer(text)
    return str(record["answer"]) if value is not None and value == record["answer"] else None
