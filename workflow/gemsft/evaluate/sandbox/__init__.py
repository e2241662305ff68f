"""The sandbox that runs model-written Python programs against their unit tests.

``run_programs`` runs complete programs (solution + tests + the check call) and says, for
each, whether it completed: its top-level code ran to the end and the process exited with 0.
``sandbox_capabilities`` says what isolation this machine achieves; in strict mode
``run_programs`` raises ``SandboxUnavailable`` where it cannot isolate programs. The isolation
model, and which module implements which part of it, is in docs/sandbox.md.
"""

from .pool import (STATUSES, ExecutionResult, SandboxUnavailable, run_programs,
                   sandbox_capabilities)

__all__ = ["ExecutionResult", "SandboxUnavailable", "run_programs", "sandbox_capabilities",
           "STATUSES"]
