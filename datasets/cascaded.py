"""CLIT's test wrappers, read from its configs as they are (`sr-implicit-paired-cascaded`,
`sr-implicit-downsampled-cascaded`).

At test time (no inp_size) they give what LIIF's wrappers give: the whole LR image and its HR
crop (paired: HR cropped to s x LR, s = HR height // LR height; downsampled: LR of
floor(H / s + 1e-9) rows, HR cropped to round(lr * s), PIL bicubic). The cascade levels they
add are the model's business here: `clit` reads them from the cell (models.clit). Training
with them (per-stage random scales, the stage count cycling per batch) is not read from
these wrappers.
"""
from typing import Optional

from torch.utils.data import Dataset

from .datasets import register
from .wrappers import SRImplicitDownsampled, SRImplicitPaired

# models.clit.SCALE_BASE: the cascade the model builds from a cell.
SCALE_BASE = 4


def check_test_args(name: str, inp_size: Optional[int], scale_base: float,
                    window_size: int) -> None:
    """ValueError for what these readers do not do: training crops, another scale_base, and
    the SwinIR padding of CLIT's test-swinir configs."""
    if inp_size is not None:
        raise ValueError(f"{name}: inp_size {inp_size} (training) is not supported; CLIT's "
                         "test configs (no inp_size) are; train CLIT from configs/train-clit")
    if scale_base != SCALE_BASE:
        raise ValueError(f"{name}: scale_base {scale_base}; clit cascades in stages of "
                         f"x{SCALE_BASE}, as every official test config says")
    if window_size:
        raise ValueError(f"{name}: window_size {window_size} (CLIT's SwinIR padding, a whole "
                         "window even when divisible) is not supported")


@register('sr-implicit-paired-cascaded')
def paired_cascaded(dataset: Dataset, inp_size: Optional[int] = None, batch_size: int = 1,
                    scale_base: float = SCALE_BASE, sample_q: Optional[int] = None,
                    window_size: int = 0, augment: bool = False) -> Dataset:
    """CLIT's paired test wrapper: sr-implicit-paired on whole images."""
    check_test_args('sr-implicit-paired-cascaded', inp_size, scale_base, window_size)
    return SRImplicitPaired(dataset, augment=augment, sample_q=sample_q)


@register('sr-implicit-downsampled-cascaded')
def downsampled_cascaded(dataset: Dataset, inp_size: Optional[int] = None, batch_size: int = 1,
                         scale_base: float = SCALE_BASE, scale_min: float = 1,
                         scale_max: Optional[float] = None, sample_q: Optional[int] = None,
                         k: int = 1, window_size: int = 0, augment: bool = False,
                         phase: str = 'train') -> Dataset:
    """CLIT's downsampling test wrapper: sr-implicit-downsampled at exactly scale_max (the
    official test takes scale_max alone when there is no inp_size)."""
    check_test_args('sr-implicit-downsampled-cascaded', inp_size, scale_base, window_size)
    if scale_max is None:
        raise ValueError("sr-implicit-downsampled-cascaded: scale_max (the test scale) is "
                         "required")
    return SRImplicitDownsampled(dataset, scale_min=scale_max, scale_max=scale_max,
                                 augment=augment, sample_q=sample_q)
