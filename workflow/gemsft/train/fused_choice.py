"""`train.fused_loss`: whether a run computes its loss fused (:mod:`gemsft.losses.fused`) or on logits.

``true`` and ``false`` are taken as set, except that a loss kind without a fused form (``ce_entropy``,
``ts2``, ``asft``) runs on logits whatever the setting, the reason recorded.
``auto`` (the default) fuses a loss kind on a device type only where a benchmark measured the fused
loss not slower there than the same loss on materialised logits (at least :data:`NOT_SLOWER` of its
speed: the margin of run-to-run noise). :data:`MEASURED` holds those measurements with the result
files they come from (``tests/test_fused_training.py`` checks each against its file); a pair not
measured runs on logits, with that reason: so far ``dft`` and ``eaft`` on CUDA (no GPU has run
``benchmarks/loss_bench.py``'s ``fused_dft`` and ``fused_eaft``) run fused there only with ``true``. The fused loss always holds less memory (no tokens x vocabulary logits):
where the logits do not fit, set ``true``.
"""

from __future__ import annotations

from dataclasses import dataclass

NOT_SLOWER = 0.97  # fused speed / unfused speed at or above which the fused loss counts as not slower


@dataclass(frozen=True)
class Measurement:
    """The fused loss against the same loss on logits, on one device type, from one result file."""

    fused_not_slower: bool
    finding: str  # the numbers, in words
    source: str  # the result file, relative to the repository
    fused_variant: str  # the two variants' names in that file
    unfused_variant: str


_H100 = "benchmarks/results/train_throughput_cuda.json"
MEASURED: dict[tuple[str, str], Measurement] = {
    ("cpu", "gem"): Measurement(
        True, "loss step, float32, 2 cores: fused 4.45 s vs 5.08 s (N=4096, V=32000) and 9.46 s vs 10.69 s "
              "(N=2048, V=128256) on logits", "benchmarks/results/loss_bench_cpu.txt", "fused_gem", "gem_loss"),
    ("cpu", "dft"): Measurement(
        True, "loss step, float32, 2 cores: fused 4.52 s vs 5.77 s (N=4096, V=32000) and 9.29 s vs 11.83 s "
              "(N=2048, V=128256) on logits", "benchmarks/results/loss_bench_cpu.txt", "fused_dft", "dft_loss"),
    ("cpu", "eaft"): Measurement(
        True, "loss step, float32, 2 cores, alpha 1: fused 4.53 s vs 5.81 s (N=4096, V=32000) and 9.54 s vs "
              "12.08 s (N=2048, V=128256) on logits", "benchmarks/results/loss_bench_cpu.txt", "fused_eaft",
        "eaft_loss"),
    ("cuda", "gem"): Measurement(
        False, "training, H100, bf16, Llama-3.2-1B shape: fused 15,990 vs 25,917 tokens/s on logits (0.62x; "
               "measured before the fused head ran under the Trainer's autocast)", _H100, "gem_fused", "gem"),
    ("cuda", "ce"): Measurement(
        False, "training, H100, bf16, Llama-3.2-1B shape: fused 16,347 vs 25,791 tokens/s on logits (0.63x; "
               "measured before the fused head ran under the Trainer's autocast)", _H100, "ce_fused", "ce"),
}


@dataclass(frozen=True)
class FusedChoice:
    """Whether a run's loss is fused, the setting it came from and why; recorded in train_metrics.json."""

    value: bool
    setting: bool | str
    reason: str


def choose_fused_loss(setting, device_type: str, loss_kind: str, has_fused: bool) -> FusedChoice:
    """The fused-or-logits choice for `loss_kind` on `device_type` ("cpu", "cuda", ...) under
    `setting` (true, false, "auto"; None is "auto"); `has_fused`: whether the kind has a fused form."""
    setting = "auto" if setting is None else setting
    if not (isinstance(setting, bool) or setting == "auto"):
        raise ValueError(f"train.fused_loss must be true, false or auto; got {setting!r}")
    if not has_fused:  # ce_entropy, ts2 and asft: true and auto alike
        return FusedChoice(False, setting, f"on logits: loss {loss_kind!r} has no fused form")
    if isinstance(setting, bool):
        return FusedChoice(setting, setting, "set in the config")
    measured = MEASURED.get((device_type, loss_kind))
    if measured is None:
        return FusedChoice(False, setting, f"fused loss {loss_kind!r} not measured on {device_type}: on logits")
    verdict = "fused: not slower" if measured.fused_not_slower else "on logits: the fused loss is slower"
    return FusedChoice(measured.fused_not_slower, setting,
                       f"{verdict} on {device_type} ({measured.finding}; {measured.source})")
