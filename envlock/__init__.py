"""envlock: fingerprint, pin and prove TensorFlow reproducibility across machines."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "lockdown"]


def lockdown(*args: Any, **kwargs: Any) -> Any:
    """Seed everything and lock determinism settings for the user's own training script.

    Imported lazily so ``import envlock`` stays cheap and never imports TensorFlow.
    """
    from envlock.lockdown import lockdown as _lockdown

    return _lockdown(*args, **kwargs)
