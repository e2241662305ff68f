"""The embedded world: a seeded synthetic language with chat, code, math and knowledge tasks whose
true answer distributions are known, so a tiny model can show the paper's effects offline."""

from gemsft.data.world.build import FILES, answer_prefix, build_world, judge, write_world

__all__ = ["FILES", "answer_prefix", "build_world", "judge", "write_world"]
