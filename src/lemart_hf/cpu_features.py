"""What this machine's CPU can do fast, for choosing (or warning about) a dtype."""

from __future__ import annotations


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX); True where torch cannot tell.

    Where it does, bf16 runs 1.5-1.8x (training) and 1.3-1.6x (inference) fp32 here; where it does not, bf16 is
    emulated and slower than fp32.
    """
    import torch

    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    checks = [check for check in checks if check is not None]
    return not checks or any(check() for check in checks)
