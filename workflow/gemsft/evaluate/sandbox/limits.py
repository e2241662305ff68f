"""What a sandboxed program may use, and the uids it runs as (docs/sandbox.md, "Per program").

Standard library only, like every module a worker imports (worker.py explains why).
"""

MEMORY_LIMIT_BYTES = 1 << 30  # RLIMIT_AS
FILE_SIZE_LIMIT_BYTES = 10 << 20  # RLIMIT_FSIZE, per file
# RLIMIT_NPROC counts a uid's processes: as root those of the worker's dedicated uid; without root
# those of the uid in the worker's own user namespace (Linux 5.14+ counts per user namespace), so
# either way it bounds one worker's, hence one program's, processes.
NPROC_LIMIT = 64
NOFILE_LIMIT = 256
# Output kept per program (stderr: half head, half tail); the rest is discarded unread.
STDOUT_CAP_BYTES = 64 << 10
STDERR_CAP_BYTES = 32 << 10
DETAIL_CAP_CHARS = 300
# A worker's dedicated uid is UID_BASE + its host PID: no account uses that range, and no two
# live workers share one. FALLBACK_UID (nobody) is used where setuid to it is refused.
UID_BASE = 2_000_000_000
FALLBACK_UID = 65534
