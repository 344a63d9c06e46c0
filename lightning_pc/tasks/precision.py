"""A warning when a training precision will run slowly because the CPU emulates it.

PyTorch runs bfloat16 and float16 arithmetic on any x86-64 CPU, but without native
instructions (``avx512_bf16`` / ``amx_bf16`` for bfloat16, ``avx512_fp16`` / ``amx_fp16`` for
float16) every operation converts to and from float32: a ``bf16-mixed`` step of the
quickstart took 3-4x longer than ``32-true`` on such a CPU, with nothing said. The tasks call
:func:`warn_if_slow_precision` when they are set up.
"""

from __future__ import annotations

import functools
import platform

from lightning.pytorch.utilities import rank_zero_warn

#: CPU feature flags (``/proc/cpuinfo``) that make each reduced float type fast
_NATIVE_FLAGS = {
    "bf16": {"avx512_bf16", "amx_bf16", "bf16"},  # x86 AVX-512 / AMX, Arm (Features: bf16)
    "fp16": {"avx512_fp16", "amx_fp16", "fphp"},  # x86 AVX-512 / AMX, Arm (Features: fphp)
}
_warned: set[str] = set()


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags from ``/proc/cpuinfo`` (``None`` where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return None
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return frozenset(flags) if flags else None


def cpu_has_native(kind: str) -> bool | None:
    """Whether the CPU computes ``kind`` (``"bf16"`` or ``"fp16"``) natively; ``None`` when
    unknown (no ``/proc/cpuinfo``, e.g. macOS or Windows)."""
    flags = cpu_flags()
    if flags is None:
        return None
    return bool(flags & _NATIVE_FLAGS[kind])


def _reduced_type(precision: str) -> str | None:
    """``"bf16"`` or ``"fp16"`` for a Lightning precision flag that computes in it."""
    p = str(precision)
    if p.startswith("bf16"):
        return "bf16"
    if p in ("16", "16-mixed", "16-true"):
        return "fp16"
    return None


def slow_precision_message(precision: str, device_type: str) -> str | None:
    """The warning for ``precision`` on ``device_type``, or ``None`` when it runs natively
    (or when that cannot be told)."""
    kind = _reduced_type(precision)
    if device_type != "cpu" or kind is None or cpu_has_native(kind) is not False:
        return None
    name = "bfloat16" if kind == "bf16" else "float16"
    flags = " / ".join(sorted(f for f in _NATIVE_FLAGS[kind] if "_" in f))
    return (
        f"precision={precision!r} on a CPU ({platform.processor() or platform.machine()}) "
        f"without native {name} instructions (no {flags}): PyTorch emulates {name} "
        f"arithmetic there, and a training step can take several times longer than with "
        f"precision='32-true' (3-4x was measured on the quickstart). Use '32-true' on this "
        f"machine, or a GPU."
    )


def warn_if_slow_precision(precision: str, device_type: str) -> bool:
    """Warns once per process and precision (on global rank zero) if ``precision`` will be
    emulated on ``device_type``; returns whether it warned now."""
    message = slow_precision_message(precision, device_type)
    if message is None or precision in _warned:
        return False
    _warned.add(precision)
    rank_zero_warn(message)
    return True
