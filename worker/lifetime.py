"""A process's life tied to its parent's: no Celery worker outlives `tftsweep serve`, and no
pool process (so no run in training) outlives its Celery worker."""

from __future__ import annotations

import signal


def die_with_parent() -> None:
    """Linux: this process is killed when the thread that started it ends, however it ends
    (`serve` killed outright: its worker; a Celery main process: its pool processes)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
