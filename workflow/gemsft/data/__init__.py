"""The paper's real data (UltraFeedback, AlpacaEval, HumanEval, GSM8K, GEM's creative-writing
prompts) from the Hugging Face hub at pinned revisions or from a local mirror, in the record formats
of the embedded world."""

from gemsft.data.gsm8k import read_gsm8k
from gemsft.data.loaders import (format_for_sft, load, load_alpaca_eval, load_creative, load_gsm8k, load_humaneval,
                      load_preferences, load_sft, load_text)
from gemsft.data.sources import DATASETS, DataSource, mirror_root
from gemsft.data.write import load_real_data, write_real_data

__all__ = ["DATASETS", "DataSource", "format_for_sft", "load", "load_alpaca_eval", "load_creative", "load_gsm8k",
           "load_humaneval", "load_preferences", "load_real_data", "load_sft", "load_text", "mirror_root", "read_gsm8k",
           "write_real_data"]
