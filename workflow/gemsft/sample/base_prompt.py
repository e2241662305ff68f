"""The base model's prompts (Table 2's pre-trained row): chat prompts, and math questions, in the
pretraining frame, after k worked examples.

Appendix F.1 samples the pre-trained Llama-3.1-8B "employing few-shot learning to teach the model to
follow instructions and answer questions": 5 shots (Table 2), 100 AlpacaEval prompts, 32 responses
each. The paper does not publish its examples. Here they are the first `shots` single-turn
conversations of the SFT training data (`sft_train.jsonl`: UltraFeedback's, or the world's), in
file order. Each becomes a "Q: <user>\\nA: <assistant>" turn, and turns are separated by a blank line
before the prompt's own "Q: <prompt>\\nA:". With 0 shots the prompt is that last frame alone, the
world's pretraining frame (the embedded default).

After worked examples, a base model that has answered usually goes on with a new "Q:" turn, because
the examples taught it that frame. So with shots each sample is cut where that turn starts
(`cut_at_next_turn`), as a stop string would cut it. With 0 shots nothing is cut: the world's tiny
model ends its answers with EOS, as its pretraining documents do.

Config: `sampling.base` {shots, prompts} (config/schema/config.schema.yaml; paper: 5 and 100).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from gemsft import files
from gemsft.data.world import FILES
from gemsft.data.world.common import QA_FRAME, QA_PROBE
from gemsft.sample.plan import SamplingRequest, sample_requests, task_settings

SHOT_SEPARATOR = "\n\n"
# Where a base model's answer ends and its next, invented question starts.
NEXT_TURN = "\nQ:"
DEFAULT = {"shots": 0, "prompts": None}


def base_config(sampling: dict) -> dict:
    """`sampling.base` with its defaults (0 shots, the chat task's prompts)."""
    return {**DEFAULT, **(sampling.get("base") or {})}


def base_chat_settings(sampling: dict) -> dict:
    """The chat task's sampling settings (`task_settings`) with the base model's prompt limit."""
    settings = task_settings(sampling, "chat")
    limit = base_config(sampling)["prompts"]
    return settings if limit is None else {**settings, "prompts": limit}


def base_sampling(sampling: dict) -> dict:
    """The sampling section as the base model's chat samples were planned, for readers that check a
    samples file against its plan (`gemsft.sample.plan.read_planned_samples`)."""
    limit = base_config(sampling)["prompts"]
    if limit is None:
        return sampling
    tasks = {**sampling["tasks"], "chat": {**sampling["tasks"]["chat"], "prompts": limit}}
    return {**sampling, "tasks": tasks}


def qa_prompt(prompt: str, examples: list[dict] = ()) -> str:
    """`prompt` in the pretraining frame after the worked examples ({"question", "answer"}); no BOS."""
    turns = [QA_FRAME.format(request=e["question"], response=e["answer"]) for e in examples]
    return SHOT_SEPARATOR.join([*turns, QA_PROBE.format(request=prompt)])


def few_shot_examples(data_dir: str | Path, shots: int) -> list[dict]:
    """The first `shots` conversations of the SFT training data that are one user turn and one
    assistant answer, as {"id", "question", "answer"}."""
    if shots == 0:
        return []
    path = Path(data_dir) / FILES["sft_train"]
    examples = []
    for row in files.read_jsonl(path):
        messages = row.get("messages") or []
        if [m.get("role") for m in messages] == ["user", "assistant"]:
            examples.append({"id": row.get("id"), "question": messages[0]["content"],
                             "answer": messages[1]["content"]})
            if len(examples) == shots:
                return examples
    raise ValueError(f"{path}: sampling.base.shots is {shots}, but only {len(examples)} conversations are one "
                     "user turn and one assistant answer")


def base_requests(data_dir: str | Path, settings: dict[str, dict], outputs: list[str],
                  shots: int) -> dict[str, SamplingRequest]:
    """The base model's requests: those of `sample_requests`, each prompt already framed by
    `qa_prompt` after `shots` worked examples, so they are sampled in the "raw" format (BOS + text).
    With 0 shots the text is exactly what the "qa" format renders."""
    examples = few_shot_examples(data_dir, shots)
    requests = sample_requests(data_dir, settings, outputs, "raw")
    # Math is asked as its bare question, the frame of the world's pretraining math documents (the SFT
    # prompt's instructions around it are what SFT teaches).
    return {output: dataclasses.replace(request, prompts=[
                {**p, "prompt": qa_prompt(p.get("question", p["prompt"]), examples)} for p in request.prompts])
            for output, request in requests.items()}


def cut_at_next_turn(rows: list[dict]) -> list[dict]:
    """Sample rows with each text cut where a new "Q:" turn starts (trailing whitespace dropped); a cut
    sample's finish_reason is "stop" (vLLM's for a stop string). num_tokens still counts every
    generated token."""
    out = []
    for row in rows:
        end = row["text"].find(NEXT_TURN)
        out.append(row if end < 0 else {**row, "text": row["text"][:end].rstrip(), "finish_reason": "stop"})
    return out
