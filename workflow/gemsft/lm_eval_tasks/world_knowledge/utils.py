"""Helpers for the `gemsft_world_knowledge` lm-eval task (loaded by lm-eval's `!function`)."""


def doc_to_choice(doc: dict) -> list[str]:
    """The scored continuations: " {choice}." for each of the row's choices."""
    return [f" {choice}." for choice in doc["choices"]]
