"""CMSR's scale-to-mean tables: reading, writing, and making them as the official init_cmsr.py
does (LMF, He & Jin, CVPR 2024; models.cmsr renders with them).

File format (the official one, YAML): {target scale: {decode scale: threshold}}, e.g.
    12: {1: 0.13, 1.5: 0.16, 2: 0.19, 3: 0.24, 4: 0.3, 6: 0.4, 8: 0.5}

The table maker (`refine_table`, per image): the model decodes the image at the target scale,
and at each lower decode scale s with bilinear upsampling; scanning the code means m = 0,
0.01, ... (lmliif up to 1, lmlte up to 0.5), the pixels whose code mean is within 0.001 of m are
"fully rendered" at s while their MSE against the target-scale decoding is at most the
threshold; s's entry becomes the last such m (never raised: over images the table only
tightens), and entries of lower scales are capped by it. Means not passed at any scale set the
target scale's own entry.
"""
import math
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
import yaml

from models.cmsr import Tables, check_tables
from models.ensemble import sample_bilinear, sample_nearest
from utils.config import load_config
from utils.coords import make_coord
from utils.files import atomic_path

# Decode scales of a new table (the official init_cmsr.py's), those up to the target scale.
INITIAL_SCALES = (1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32)
SAMPLES = 101            # code means scanned: lo + (hi - lo) * i / 100
MEAN_RADIUS = 0.001      # pixels within this of a scanned mean are scored together
DEFAULT_MSE = 2e-5       # the official default threshold


def load_tables(path: str) -> Tables:
    """The tables of a YAML file; ValueError naming the file if it is not one."""
    tables = load_config(path, 'CMSR table')
    check_tables(tables, f"CMSR table {path}")
    return {k: dict(sorted(v.items())) for k, v in sorted(tables.items())}


def tables_for(model, path: str, model_source: str) -> Tables:
    """The tables of `path` for `model` (a script's --cmsr); ValueError naming the checkpoint
    when the model has no modulations to use them with."""
    tables = load_tables(path)
    if not getattr(model, 'supports_cmsr', False):
        raise ValueError(f"--cmsr needs an LMF model (lmliif, lmlte); {model_source} is a "
                         f"{type(model).__name__} model")
    return tables


def save_tables(path: str, tables: Tables) -> None:
    """Writes the tables atomically (a temporary file renamed over `path`)."""
    with atomic_path(path) as tmp, open(tmp, 'w') as f:
        yaml.safe_dump({k: dict(v) for k, v in sorted(tables.items())}, f)


def initial_table(scale: float) -> Dict[float, float]:
    """A new table for target `scale`: every official decode scale up to it, threshold 1."""
    return {s: 1 for s in INITIAL_SCALES if s <= scale}


def masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor
               ) -> Optional[torch.Tensor]:
    """0-dim MSE over the masked rows, None when no row is masked (the official NaN)."""
    if not bool(mask.any()):
        return None
    return F.mse_loss(a[mask], b[mask])


@torch.no_grad()
def refine_table(model, inp: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor,
                 table: Dict[float, float], mse_threshold: float = DEFAULT_MSE,
                 impl: str = 'fast') -> Dict[float, float]:
    """One image's update of `table` (in place, and returned), as the official
    update_scale2mean.

    Args:
        model: an LMF model (lmliif, lmlte) in eval mode.
        inp: (1, 3, h, w) normalised input.
        coord, cell: (1, Q, 2) the whole target grid and its cells (already multiplied by the
            protocol's max(scale / 4, 1), as init_cmsr.py does).
        table: {decode scale: threshold} of this target scale, keys ascending.
    """
    if not getattr(model, 'supports_cmsr', False):
        raise ValueError(f"CMSR tables are made for LMF models (lmliif, lmlte); "
                         f"{type(model).__name__} has no modulations")
    feat = model.encode(inp)
    m = model.modulate(feat, model.modulation_cell(cell))
    decode = model.modulated_decoder(m, impl)

    h, w = inp.shape[-2:]
    Q = coord.shape[1]
    target = decode(coord, cell).view(Q, -1)
    means = sample_nearest(model.mod_mean(m), coord).flatten()
    hi = model.cmsr_sample_max
    samples: List[float] = [hi * i / (SAMPLES - 1) for i in range(SAMPLES)]
    max_scale = math.sqrt(Q / (h * w))
    for scale in list(table):
        if scale >= max_scale:
            break
        qh, qw = int(h * scale), int(w * scale)
        q_coord = make_coord((qh, qw), device=inp.device).view(1, qh * qw, 2)
        q_cell = q_coord.new_tensor([2 / qh, 2 / qw]).expand_as(q_coord)
        low = decode(q_coord, q_cell).view(1, qh, qw, -1).permute(0, 3, 1, 2)
        pred = sample_bilinear(low, coord).reshape(Q, -1)
        best = table[scale]
        for mid in list(samples):
            mse = masked_mse(pred, target, (means - mid).abs() <= MEAN_RADIUS)
            if mse is None:
                continue
            if bool(mse > mse_threshold):  # compared in float32, as the official code does
                break
            samples.remove(mid)
            best = mid
        table[scale] = min(best, table[scale])
        cap_below(table, scale)
    if samples:
        table[max_scale] = samples[-1]
        cap_below(table, max_scale)
    return table


def cap_below(table: Dict[float, float], scale: float) -> None:
    """No decode scale below `scale` keeps a threshold above scale's."""
    for s in table:
        if s < scale and table[s] > table[scale]:
            table[s] = table[scale]
