"""envlock: fingerprint, pin and prove TensorFlow reproducibility across machines.

The implementation of ``lockdown`` lives in ``envlock.locking`` and is imported lazily, so
``import envlock`` stays cheap and never imports TensorFlow. ``envlock.probe`` (with
``ProbeContext`` and ``ProbeSkipped``) is the decorator for your own probes, also lazy.
"""

from __future__ import annotations

from typing import Any

from envlock.version import __version__

__all__ = ["ProbeContext", "ProbeSkipped", "__version__", "lockdown", "probe", "reseed"]


def lockdown(*args: Any, **kwargs: Any) -> Any:
    """Seed Python, numpy and TensorFlow, enable op determinism and fix thread counts.

    See ``envlock.locking.lockdown`` for the arguments and the report it returns.
    """
    # lazy: `import envlock` stays cheap; lockdown() loads on first use
    from envlock.locking import lockdown as _lockdown

    return _lockdown(*args, **kwargs)


def reseed(seed: int) -> None:
    """Reset every seed (for code that trains twice in one process)."""
    # lazy: `import envlock` stays cheap; reseed() loads on first use
    from envlock.locking import reseed as _reseed

    _reseed(seed)


# ``from envlock import probe``: the decorator for user probe modules (envlock.probes.registry),
# imported on first use so ``import envlock`` stays cheap (PEP 562).
_LAZY = {"probe": "probe", "ProbeContext": "ProbeContext", "ProbeSkipped": "ProbeSkipped"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        # lazy: `import envlock` stays cheap; the probe decorator loads on first use
        from envlock.probes import registry

        return getattr(registry, _LAZY[name])
    raise AttributeError(f"module 'envlock' has no attribute {name!r}")
