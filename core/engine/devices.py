"""The one check of a ``--device`` value (commands' option, the server's ``device`` setting): its form, and
that this torch build and this machine have what it names. Runs before anything loads or listens, so
``--device cuda`` on a CPU-only machine is one line and exit 2, not a traceback from deep inside torch.

torch is imported only for a value that needs it (cuda, cuda:N, mps): a broker or a ``cpu`` run checks
its setting without loading torch."""

from __future__ import annotations

import re

from colorprop.errors import InputError

DEVICE_FORMS = "auto, cpu, cuda, cuda:N or mps"
_DEVICE = re.compile(r"auto|cpu|mps|cuda(?::(\d{1,3}))?")
GPU_INSTALL = "install the CUDA build of torch (docs/SERVER.md, 'A GPU server': make venv-cuda)"


def check_device(device: object, option: str = "--device") -> str:
    """``device`` if usable here; else InputError (exit 2) naming ``option``, the value and what is missing
    (a torch built without CUDA/MPS, no visible device, an index past the last device)."""
    m = _DEVICE.fullmatch(device) if isinstance(device, str) else None
    if m is None:
        raise InputError(f"{option} {device!r}: must be {DEVICE_FORMS}")
    if device.startswith("cuda"):
        _check_cuda(device, option, int(m.group(1) or 0))
    elif device == "mps":
        _check_mps(option)
    return device


def _check_cuda(device: str, option: str, index: int) -> None:
    import torch

    if not torch.backends.cuda.is_built():
        raise InputError(f"{option} {device}: this torch ({torch.__version__}) was built without CUDA; {GPU_INSTALL}")
    count = torch.cuda.device_count()
    if count == 0 or not torch.cuda.is_available():
        raise InputError(
            f"{option} {device}: no CUDA device is visible (torch.cuda.device_count() == {count}); "
            "check the driver (nvidia-smi) and CUDA_VISIBLE_DEVICES"
        )
    if index >= count:
        raise InputError(
            f"{option} {device}: only {count} CUDA device{'s' if count > 1 else ''} "
            f"(cuda:0{f'..cuda:{count - 1}' if count > 1 else ''})"
        )


def _check_mps(option: str) -> None:
    import torch

    if not torch.backends.mps.is_built():
        raise InputError(
            f"{option} mps: this torch ({torch.__version__}) was built without MPS (Apple GPUs); "
            "use cpu, or cuda on an NVIDIA machine"
        )
    if not torch.backends.mps.is_available():
        raise InputError(
            f"{option} mps: no MPS device is available (an Apple-silicon Mac with macOS 12.3 or later is needed)"
        )
