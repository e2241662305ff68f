"""gemsft: reproducible pipeline for GEM, diversity-preserving supervised fine-tuning."""

__version__ = "0.1.0"
