"""CLIT's cascade of scales (its test wrappers' `sample_system_scale`) and the sizes of its
levels: one helper for the model (models.clit) and its training wrapper (datasets.cascaded)."""
import math
from typing import List, Sequence, Tuple

# The test wrappers' scale_base (every official test config): stages of x4, then the rest.
SCALE_BASE = 4


def cascade_scales(scale: float, base: float = SCALE_BASE) -> List[float]:
    """The official sample_system_scale: s <= base -> [s]; else base, then base while the
    rest is >= base, then the rest (x12 -> [4, 3], x18 -> [4, 4, 1.125])."""
    if scale <= base:
        return [scale]
    scales, rest = [base], scale / base
    while rest > 1:
        scales.append(base if rest >= base else rest)
        rest /= base
    return scales


def level_sizes(h: int, w: int, scales: Sequence[float]) -> List[Tuple[int, int]]:
    """(rows, cols) of each cascade level of an (h, w) input: round(h * prod(scales[:k+1]))."""
    return [(round(h * math.prod(scales[:k + 1])), round(w * math.prod(scales[:k + 1])))
            for k in range(len(scales))]
