"""Where a model comes from and where it runs, in one place for every stage (training, sampling,
reward scoring, lm-eval, entropy, parameter distance).

* `resolve_model`: a local directory as is, or a hub id (``meta-llama/Llama-3.1-8B``) resolved to its
  snapshot directory in the Hugging Face cache (``$HF_HUB_CACHE``, default ``$HF_HOME/hub``). A model
  already in the cache is used as cached, without asking the hub, so cluster jobs make no network
  calls and every job sees the same revision; otherwise it is downloaded, unless ``HF_HUB_OFFLINE=1``.
* `stage_device`: ``cuda`` when a GPU is visible, else ``cpu`` (``CUDA_VISIBLE_DEVICES=""`` forces the CPU).
* `stage_dtype`: a config's ``dtype``: ``auto`` is bfloat16 on a GPU and float32 on a CPU; or an
  explicit ``float32``, ``bfloat16`` or ``float16``.
* `load_causal_lm`, `load_sequence_classifier`, `lm_eval_model_args`: a model on that device, in that
  dtype, with the config's ``attn_implementation`` (null: transformers' default).

On a CPU with the defaults (dtype auto, no attention implementation, local directories) every loader
does exactly what the stages did before it existed: float32, transformers' default attention.

torch and transformers are imported inside the functions: the rule files import this module to
plan the DAG, which must not pull in torch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

DTYPES = ("auto", "float32", "bfloat16", "float16")
# The checkpoint's own dtype (transformers' dtype="auto"): for the parameter distance, which must not
# round the weights before differencing them. Not a config value.
CHECKPOINT_DTYPE = "checkpoint"
SETTINGS_DEFAULTS = {"dtype": "auto", "attn_implementation": None}
# A value of these forms is a local path, never a hub id (gemsft.config.LOCAL_PATH_PREFIXES).
_LOCAL_PREFIXES = ("/", "./", "../", "~", ".")
# What a hub download skips: original/ holds Meta's consolidated checkpoint (16 GB for
# Llama-3.1-8B) and the rest are other frameworks' copies of the weights; transformers, vLLM and
# lm-eval read the safetensors (or .bin) and the JSON files.
_DOWNLOAD_IGNORE = ["original/*", "*.pth", "*.gguf", "*.h5", "*.msgpack", "*.onnx", "*.onnx_data", "*.ot",
                    "onnx/*", "coreml/*", "flax_model*", "tf_model*"]
_TOKENIZER_FILES = ["*.json", "*.model", "*.txt", "*.tiktoken", "*.jinja"]
_WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.safetensors.index.json")


def loading_settings(section: Mapping | None) -> dict:
    """{"dtype", "attn_implementation"} of a config section (`model` or `reward_model`), defaults
    filled: what the rules pass their scripts as params."""
    section = section or {}
    return {key: default if section.get(key) is None else section[key] for key, default in SETTINGS_DEFAULTS.items()}


# --------------------------------------------------------------------------- resolution

def _true(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as set now; huggingface_hub reads it once at import."""
    return _true(os.environ.get("HF_HUB_OFFLINE")) or _true(os.environ.get("TRANSFORMERS_OFFLINE"))


def hub_cache_dir() -> Path:
    """The hub cache as the environment names it now: HF_HUB_CACHE, else HF_HOME/hub, else
    $XDG_CACHE_HOME/huggingface/hub (huggingface_hub's own rule, read at call time)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.path.expandvars(os.environ["HF_HUB_CACHE"])).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def _looks_local(name: str) -> bool:
    # A hub id is "name" or "org/name"; anything with more parts, or a path prefix, is a directory.
    return name.startswith(_LOCAL_PREFIXES) or name.count("/") > 1 or "\\" in name


def _cached_snapshot(repo_id: str, cache: Path) -> Path | None:
    """The snapshot directory refs/main points to, where it holds a model's or a tokenizer's config."""
    from huggingface_hub import try_to_load_from_cache

    for marker in ("config.json", "tokenizer_config.json"):
        found = try_to_load_from_cache(repo_id, marker, cache_dir=cache)
        if isinstance(found, str):
            return Path(found).parent
    return None


def resolve_model(name_or_path: str | os.PathLike, *, tokenizer_only: bool = False) -> Path:
    """The local directory of a model: `name_or_path` itself when it is a directory, else the cached
    snapshot of the hub id (downloaded first when it is not cached and the hub is not offline).

    `tokenizer_only`: only the tokenizer is needed (a chat template's source), so a download fetches
    the tokenizer files, not the weights. Raises FileNotFoundError in one line naming the id and
    the cache it looked in.
    """
    name = os.fspath(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if not name or _looks_local(name):
        raise FileNotFoundError(f"{name}: model directory not found")
    from huggingface_hub.errors import HFValidationError

    cache = hub_cache_dir()
    try:
        snapshot = _cached_snapshot(name, cache)
    except HFValidationError:
        raise FileNotFoundError(f"{name}: model directory not found (and not a valid hub id)") from None
    # A snapshot without weights (only a tokenizer was fetched before) does not serve a model.
    if snapshot is not None and (tokenizer_only or _is_model_dir(snapshot)):
        return snapshot
    what = "its weights are" if snapshot is not None else "it is"
    where = (f"{name}: not a local directory, and {what} not in the Hugging Face cache {cache} "
             f"(HF_HOME={os.environ.get('HF_HOME', 'unset')})")
    if hub_offline():
        raise FileNotFoundError(f"{where}; HF_HUB_OFFLINE is set, so download it first "
                                f"(`hf download {name}` with network access)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, cache_dir=cache, ignore_patterns=_DOWNLOAD_IGNORE,
                                      allow_patterns=_TOKENIZER_FILES if tokenizer_only else None))
    except Exception as err:  # noqa: BLE001 - any hub failure (network, gated, unknown repo) reads the same
        raise FileNotFoundError(f"{where}, and downloading it failed: {type(err).__name__}: "
                                f"{str(err).splitlines()[0] if str(err) else ''}") from None


def _has_weights(path: Path) -> bool:
    return any(p for pattern in _WEIGHT_PATTERNS for p in path.glob(pattern))


def _is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and _has_weights(path)


def check_model_dir(path: str | os.PathLike, *, weights: bool = True) -> Path:
    """A resolved model directory that holds a config.json (and, with `weights`, weight files)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: not a Hugging Face model directory (no config.json)")
    if weights and not _has_weights(path):
        raise FileNotFoundError(f"{path}: no model weights (*.safetensors or *.bin)")
    return path


def resolve_model_dir(name_or_path: str | os.PathLike) -> Path:
    """`resolve_model`, then `check_model_dir`: a directory transformers can load a model from."""
    return check_model_dir(resolve_model(name_or_path))


# --------------------------------------------------------------------------- device and dtype

def stage_device() -> str:
    """"cuda" when torch sees a GPU, else "cpu"."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def dtype_name(setting: str | None = "auto", device: str | None = None) -> str:
    """The dtype's name for a setting: "auto" is "bfloat16" on a GPU and "float32" on a CPU."""
    setting = setting or "auto"
    if setting not in DTYPES:
        raise ValueError(f"dtype: unknown value {setting!r}; expected one of {', '.join(DTYPES)}")
    if setting != "auto":
        return setting
    return "bfloat16" if str(device or stage_device()).startswith("cuda") else "float32"


def stage_dtype(setting: str | None = "auto", device: str | None = None):
    """The torch dtype of a setting (see `dtype_name`)."""
    import torch

    return getattr(torch, dtype_name(setting, device))


def model_kwargs(settings: Mapping | None = None, *, device: str | None = None, dtype=None) -> dict:
    """from_pretrained keyword arguments of the settings: dtype (`dtype` overrides it: a torch dtype,
    or CHECKPOINT_DTYPE, which is transformers' "auto"), and attn_implementation when set (unset
    leaves transformers' default, as before)."""
    settings = loading_settings(settings)
    if dtype == CHECKPOINT_DTYPE:
        dtype = "auto"
    kwargs = {"dtype": dtype if dtype is not None else stage_dtype(settings["dtype"], device)}
    if settings["attn_implementation"]:
        kwargs["attn_implementation"] = settings["attn_implementation"]
    return kwargs


def _load(auto_class: str, name_or_path, settings, device, dtype, kwargs):
    import transformers

    path = resolve_model_dir(name_or_path)
    device = stage_device() if device == "auto" else device
    loaded = getattr(transformers, auto_class).from_pretrained(
        str(path), **model_kwargs(settings, device=device, dtype=dtype), **kwargs)
    model = loaded[0] if isinstance(loaded, tuple) else loaded
    if device is not None:
        model.to(device)
    return loaded


def load_causal_lm(name_or_path, settings: Mapping | None = None, *, device: str | None = "auto", dtype=None,
                   **kwargs):
    """An AutoModelForCausalLM from a directory or hub id, on `device` ("auto": `stage_device()`;
    None: left where transformers puts it, for the Trainer to place) in the settings' dtype unless
    `dtype` (a torch dtype, or CHECKPOINT_DTYPE) overrides it. Extra kwargs go to from_pretrained."""
    return _load("AutoModelForCausalLM", name_or_path, settings, device, dtype, kwargs)


def load_sequence_classifier(name_or_path, settings: Mapping | None = None, *, device: str | None = "auto",
                             dtype=None, **kwargs):
    """An AutoModelForSequenceClassification, as `load_causal_lm` (with output_loading_info=True in
    kwargs it returns (model, info), as transformers does)."""
    return _load("AutoModelForSequenceClassification", name_or_path, settings, device, dtype, kwargs)


def lm_eval_model_args(name_or_path, settings: Mapping | None = None) -> tuple[dict, str]:
    """(model_args, device) of lm-eval's "hf" model: the resolved directory, the settings' dtype on
    the stage's device, and attn_implementation when set (lm-eval forwards it to from_pretrained)."""
    device = stage_device()
    settings = loading_settings(settings)
    path = resolve_model_dir(name_or_path).resolve()
    args = {"pretrained": str(path), "dtype": dtype_name(settings["dtype"], device)}
    if settings["attn_implementation"]:
        args["attn_implementation"] = settings["attn_implementation"]
    return args, device
