"""envlock: fingerprint, pin and prove TensorFlow reproducibility across machines.

The implementation of ``lockdown`` lives in ``envlock.locking`` and is imported lazily, so
``import envlock`` stays cheap and never imports TensorFlow.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "lockdown", "reseed"]


def lockdown(*args: Any, **kwargs: Any) -> Any:
    """Seed Python, numpy and TensorFlow, enable op determinism and fix thread counts.

    See ``envlock.locking.lockdown`` for the arguments and the report it returns.
    """
    from envlock.locking import lockdown as _lockdown

    return _lockdown(*args, **kwargs)


def reseed(seed: int) -> None:
    """Reset every seed (for code that trains twice in one process)."""
    from envlock.locking import reseed as _reseed

    _reseed(seed)
