"""Device selection: chosen once in a script, then passed down explicitly."""
import torch

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def resolve_device(name: str = 'auto') -> torch.device:
    """Turns 'auto' | 'cpu' | 'cuda' | 'cuda:N' into a torch.device.

    'auto' picks CUDA when it is available and the CPU otherwise.

    Raises:
        ValueError: unknown name, or CUDA asked for where there is none.
    """
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"unknown device '{name}'; expected {DEVICE_CHOICES}") from e
    if device.type not in ('cpu', 'cuda'):
        raise ValueError(f"unknown device '{name}'; expected {DEVICE_CHOICES}")
    if device.type == 'cuda':
        if not torch.cuda.is_available():
            raise ValueError(f"device '{name}' asked for, but CUDA is not available here; "
                             "use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device '{name}' asked for, but only "
                             f"{torch.cuda.device_count()} CUDA device(s) exist")
    return device
