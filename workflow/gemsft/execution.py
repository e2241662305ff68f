"""Sandboxed execution of model-written programs as a public API: it lives in `gemsft.evaluate.sandbox`
(docs/sandbox.md describes its isolation)."""

from gemsft.evaluate.sandbox import (STATUSES, ExecutionResult, SandboxUnavailable, run_programs,
                                     sandbox_capabilities)

__all__ = ["ExecutionResult", "STATUSES", "SandboxUnavailable", "run_programs", "sandbox_capabilities"]
