"""Samples stop at the end of the assistant's turn: the stop ids come from the chat template (its
end-of-turn token plus EOS) for both backends. A tiny model with a Llama-3.1-shaped tokenizer, taught
to run past <|eot_id|> into an invented user turn (as a base-EOS-only sampler lets it), must stop at
<|eot_id|> with finish reason "stop"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from gemsft.chat_format import end_of_turn_id, end_of_turn_ids, prompt_text
from gemsft.sample import decoding, vllm_backend
from gemsft.sample import generate as sampling
from gemsft.sample.plan import SamplingSpec
from llama31_tokenizer import END_OF_TEXT, EOT, START_HEADER, llama31_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPT = "Greet Anna."
REPLY = "Hello, Anna!"
# What a model fine-tuned on a template ending turns with <|eot_id|> does when nothing stops it there:
# it goes on with a user turn it makes up. It never emits the base model's <|end_of_text|>.
FOLLOW_ON = "<|start_header_id|>user<|end_header_id|>\n\nName a red fruit.<|eot_id|>" \
            "<|start_header_id|>assistant<|end_header_id|>\n\nCherry. Cherry. Cherry. Cherry."


@pytest.fixture(scope="module")
def llama():
    return llama31_tokenizer()


@pytest.fixture(scope="module")
def eot_model_dir(llama, tmp_path_factory):
    """A tiny Llama (head_dim 64, so vLLM's CPU backend serves it too) that has memorised one
    conversation and its invented follow-on turn; saved with a generation config whose only EOS is
    <|end_of_text|>, like Llama-3.1-8B's."""
    from gemsft.chat_format import encode_rendered
    from gemsft.pretrain.model import tiny_llama

    torch.manual_seed(0)
    model = tiny_llama({"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                        "num_attention_heads": 1, "max_position_embeddings": 256}, llama)
    ids = torch.tensor([encode_rendered(llama, prompt_text(llama, PROMPT) + REPLY + EOT + FOLLOW_ON)])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(200):
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05, f"the tiny model did not memorise the conversation (loss {loss.item():.3f})"
    path = tmp_path_factory.mktemp("eot_model")
    model.eval().save_pretrained(path)
    llama.save_pretrained(path)
    return path


def test_end_of_turn_is_read_from_the_template(llama, tokenizer):
    eot, eos = llama.convert_tokens_to_ids([EOT, END_OF_TEXT])
    assert end_of_turn_id(llama) == eot and end_of_turn_ids(llama) == [eot, eos]
    # The world's template ends every turn with EOS: stopping at the end of the turn changes nothing.
    assert end_of_turn_id(tokenizer) == tokenizer.eos_token_id
    assert end_of_turn_ids(tokenizer) == [tokenizer.eos_token_id]
    # A ChatML-style template closes turns with a token that is neither EOS nor in the template's
    # first message; a base model's tokenizer without a template stops on EOS alone.
    import copy

    chatml = copy.deepcopy(llama)
    chatml.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    chatml.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                            "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    assert end_of_turn_ids(chatml) == [chatml.convert_tokens_to_ids("<|im_end|>"), eos]
    bare = copy.deepcopy(llama)
    bare.chat_template = None
    assert end_of_turn_ids(bare) == [eos]


def test_stop_ids_add_the_generation_configs_eos(eot_model_dir, llama, tmp_path):
    eot, eos = llama.convert_tokens_to_ids([EOT, END_OF_TEXT])
    assert decoding.stop_ids_of(decoding.load_sampling_tokenizer(eot_model_dir), eot_model_dir) == [eot, eos]
    # Llama-3.1-Instruct's generation config names eos ids [128001, 128008, 128009]: extras are kept.
    import shutil

    instruct = tmp_path / "instruct"
    shutil.copytree(eot_model_dir, instruct)
    (instruct / "generation_config.json").write_text(json.dumps({"eos_token_id": [eos, 7, eot]}))
    assert decoding.stop_ids_of(decoding.load_sampling_tokenizer(instruct), instruct) == [eot, eos, 7]


def test_hf_sample_stops_at_the_end_of_turn(eot_model_dir, llama):
    from transformers import AutoModelForCausalLM

    eot, eos = llama.convert_tokens_to_ids([EOT, END_OF_TEXT])
    prompt_ids = llama(prompt_text(llama, PROMPT), add_special_tokens=False)["input_ids"]
    # Stopping on the base model's EOS alone (the old rule) runs into the invented user turn.
    model = AutoModelForCausalLM.from_pretrained(eot_model_dir).eval()
    with torch.no_grad():
        raw = model.generate(torch.tensor([prompt_ids]), max_new_tokens=24, do_sample=False, eos_token_id=eos,
                             pad_token_id=eos)[0, len(prompt_ids):].tolist()
    assert eos not in raw and eot in raw
    assert llama.convert_tokens_to_ids(START_HEADER) in raw[raw.index(eot):]

    greedy = SamplingSpec(n=1, temperature=0, max_tokens=24)
    [row] = sampling.generate(eot_model_dir, [{"id": "p0", "prompt": PROMPT}], greedy, backend="hf")
    reply_tokens = len(llama(REPLY, add_special_tokens=False)["input_ids"])
    assert row == {"prompt_id": "p0", "sample_index": 0, "text": REPLY, "num_tokens": reply_tokens + 1,
                   "finish_reason": "stop"}
    # Sampled at the paper's temperature, every sample ends its turn the same way.
    rows = sampling.generate(eot_model_dir, [{"id": "p0", "prompt": PROMPT}], SamplingSpec(n=8, max_tokens=24),
                             backend="hf")
    assert {r["finish_reason"] for r in rows} == {"stop"}
    assert not any("user" in r["text"] for r in rows)


def test_vllm_is_given_the_same_stop_ids(eot_model_dir, llama):
    pytest.importorskip("vllm")
    stop = decoding.stop_ids_of(decoding.load_sampling_tokenizer(eot_model_dir), eot_model_dir)
    for spec in (SamplingSpec(n=4), SamplingSpec(n=1, temperature=0)):
        params = vllm_backend.vllm_params(spec, 0, stop)
        assert params.stop_token_ids == stop == llama.convert_tokens_to_ids([EOT, END_OF_TEXT])
        assert llama.convert_tokens_to_ids(EOT) in params.all_stop_token_ids


VLLM_SCRIPT = textwrap.dedent('''
    import json, sys
    from gemsft.sample import generate as sampling
    from gemsft.sample.plan import SamplingSpec

    if __name__ == "__main__":
        model_dir, prompt, out = sys.argv[1:]
        rows = sampling.generate(model_dir, [{"id": "p0", "prompt": prompt}],
                                 SamplingSpec(n=1, temperature=0, max_tokens=24), backend="vllm")
        with open(out, "w") as f:
            json.dump(rows, f)
''')


@pytest.mark.slow
def test_vllm_sample_stops_at_the_end_of_turn(eot_model_dir, tmp_path):
    """A real vLLM engine (CPU) on the same model gives the same row as the hf backend."""
    pytest.importorskip("vllm")
    script, out = tmp_path / "run_vllm.py", tmp_path / "rows.json"
    script.write_text(VLLM_SCRIPT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "VLLM_CACHE_ROOT": str(tmp_path / "vllm-cache"), "VLLM_NO_USAGE_STATS": "1"}
    proc = subprocess.run([sys.executable, str(script), str(eot_model_dir), PROMPT, str(out)], env=env,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        log = proc.stdout + proc.stderr
        if "is less than requested memory for kv" in log or "Available memory on node" in log:
            pytest.skip("vLLM cannot run here: too little free memory")
        pytest.fail(f"vLLM run failed (exit {proc.returncode}):\n{log[-6000:]}")
    greedy = SamplingSpec(n=1, temperature=0, max_tokens=24)
    expected = sampling.generate(eot_model_dir, [{"id": "p0", "prompt": PROMPT}], greedy, backend="hf")
    assert json.loads(out.read_text()) == expected
    assert expected[0]["finish_reason"] == "stop" and expected[0]["text"] == REPLY
