"""Entry script of a sandbox worker (docs/sandbox.md, "Process model").

The caller runs ``python -I -S -B worker.py --bootstrap CFG``, which execs
``python -I -B worker.py --zygote CFG``. Run like that, in isolated mode, neither this
directory nor the gemsft package is on sys.path, and sys.path must stay as it is: programs
import from it. So this script imports its sibling modules as a package of their own,
``_gemsft_sandbox``, whose only search location is this directory and whose ``__init__``
(the caller's side) never runs. Standard library only.
"""

import importlib
import json
import os
import sys
import types

PACKAGE = "_gemsft_sandbox"


def _register_package() -> None:
    package = types.ModuleType(PACKAGE)
    package.__path__ = [os.path.dirname(os.path.abspath(__file__))]
    sys.modules[PACKAGE] = package


def main(argv: list[str]) -> None:
    mode, cfg = argv[1], json.loads(argv[2])
    _register_package()
    if mode == "--bootstrap":
        importlib.import_module(f"{PACKAGE}.bootstrap").bootstrap(cfg)
    elif mode == "--zygote":
        importlib.import_module(f"{PACKAGE}.zygote").Zygote(cfg).serve()
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv)
