"""LMF, Latent Modulated Function (He & Jin, CVPR 2024): what LM-LIIF and LM-LTE share.

LIIF-style decoders run a wide MLP for every query. LMF moves that work to the latent grid: a
hypernetwork (an MLP run once per latent code, given the code and the cell) outputs the
code's modulations (per-layer scales and shifts of a narrow render MLP, models.lmmlp) and, with
`mod_input`, a compressed code. A query then runs only the render MLP on its code's compressed
code and relative coordinate, modulated by that code's modulations, blended over the 4 nearest
codes as in LIIF.

The modulations depend on the cell, so they are made per (image, cell): `modulate`. The
official code reads code i's cell from query i (all queries of an image share one cell in
every official use); here each image's cell is its first query's, and queries of one image
with different cells are refused.

The reference path (`query`) follows the official training path: sample the codes and the
modulations at each of the 4 nearest codes, run the render MLP, blend. The fast path folds
each layer's bias and modulations per code, scale' = 1 + s and shift' = b (1 + s) + t, so a
hidden layer is one product and one fused multiply-add per query; each layer's folded scale
and shift of a query's code are gathered as one row.
"""
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F

from utils.coords import band_coords
from .cmsr import CMSR_MAX_SCALE, check_tables, cmsr_bands, cmsr_decode
from .decoder import (Decoder, ImplicitDecoder, check_queries, decode_in_chunks,
                      feature_batch, first_feature)
from .ensemble import (Lookup, area, blend, make_lookup, members, nearest_codes, relative_cell,
                       sample_bilinear)
from .models import make

# Queries per fast-path call on a CPU: the 4 members' rows of one layer's gathered
# modulations (4 x 4096 x 32 floats) and activations stay in cache.
FAST_CHUNK_SIZE = 4096


class Modulated(NamedTuple):
    """One image's latent grid after the hypernetwork, for one cell.

    mod: (B, M, h, w) modulations of every code: all the render MLP's scales, then its shifts.
    codes: (B, R, h, w) what the render MLP's input is built from at each code.
    inp: (B, 3, h, w) the normalised input (LM-LTE's bilinear skip, CMSR's coarsest level).
    """
    mod: torch.Tensor
    codes: torch.Tensor
    inp: torch.Tensor


class ModTables(NamedTuple):
    """Fast path: every code's numbers as rows, and the nearest-code tables.

    layers: per render layer, (B*h*w, 2D) rows [folded scale | folded shift].
    extra: (B*h*w, E) numbers the first layer's input is built from (LM-LTE's coef and freq),
        or None (LM-LIIF's code enters the first folded shift).
    cell_folded: the cell's part of the first layer is folded in (LM-LIIF: into the first
        folded shift; LM-LTE: `cell_term`, its (B, D/2) phase): queries then must have the
        cell the tables were made with (CMSR's levels have other cells and do not fold it).
    """
    layers: List[torch.Tensor]
    extra: Optional[torch.Tensor]
    lookup: Lookup
    inp: torch.Tensor
    cell_folded: bool
    cell_term: Optional[torch.Tensor] = None


def image_cell(cell: torch.Tensor) -> torch.Tensor:
    """(B, Q, 2) query cells -> (B, 2), the one cell of each image; ValueError if they differ."""
    first = cell[:, :1]
    if not bool((cell == first).all()):
        raise ValueError("LMF computes its modulations once per image and cell: all queries "
                         "of an image must have the same cell (decode other cells separately)")
    return first[:, 0]


class LatentModulated(ImplicitDecoder):
    """Base of lmliif and lmlte. A subclass builds encoder, hypernet and imnet (with
    `build_decoder`) and defines `modulate`, `render_input` and, for the fast path,
    `first_layer`."""
    fast_chunk_size = FAST_CHUNK_SIZE
    supports_cmsr = True
    lr_skip = False              # LM-LTE adds bilinear interpolation of the input
    cmsr_sample_max = 1.0        # the range of modulation means the table maker scans

    def build_decoder(self, imnet_spec: Dict[str, Any], hypernet_spec: Dict[str, Any],
                      hypernet_in: int, extra_out: int, imnet_in: int,
                      cmsr_spec: Optional[Dict[str, Any]]) -> None:
        """The hypernet (hypernet_in -> modulations + extra_out) and the render MLP."""
        if imnet_spec is None or hypernet_spec is None:
            raise ValueError(f"{type(self).__name__} needs imnet_spec (the render MLP, lmmlp) "
                             "and hypernet_spec (the latent MLP, mlp)")
        if imnet_spec.get('name') != 'lmmlp':
            raise ValueError(f"LMF's render MLP must be 'lmmlp', got '{imnet_spec.get('name')}'")
        args = imnet_spec.get('args') or {}
        self.mod_dim = (bool(args.get('mod_scale', True)) + bool(args.get('mod_shift', True))) \
            * args['hidden_depth'] * args['hidden_dim']
        # The official order of construction, so state-dict keys come in the official order.
        self.hypernet = make(hypernet_spec, args={'in_dim': hypernet_in,
                                                  'out_dim': self.mod_dim + extra_out})
        self.build_input_layers()
        self.imnet = make(imnet_spec, args={'in_dim': imnet_in, 'mod_up_merge': False})
        self.cmsr_spec = None
        if cmsr_spec is not None:
            if 'updating_scale' in cmsr_spec:
                raise ValueError("cmsr_spec with 'updating_scale' (the official table maker's "
                                 "mode) is not a decoding mode here: run "
                                 "scripts/make_cmsr_table.py")
            check_tables(cmsr_spec.get('s2m_tables'), 'cmsr_spec s2m_tables')
            self.cmsr_spec = dict(cmsr_spec)

    # --- what a subclass defines ---

    def build_input_layers(self) -> None:
        """Layers of the render MLP's input built between hypernet and imnet (LM-LTE's)."""

    def modulate(self, feat, cell: Optional[torch.Tensor]) -> Modulated:
        """Runs the hypernetwork over every code for (B, 2) image cells."""
        raise NotImplementedError

    def render_input(self, q_codes: torch.Tensor, rel_coord: torch.Tensor,
                     rel_cell: Optional[torch.Tensor]) -> torch.Tensor:
        """(..., R) codes, (..., 2) relative coordinates and cells -> (..., in_dim)."""
        raise NotImplementedError

    def first_layer(self, m: Modulated, cell: Optional[torch.Tensor]):
        """Fast path, from `modulate`'s output and the (B, 2) image cells (None: not to be
        folded): ((B, D, h, w) the part of the first layer's output fixed per code, or None;
        (B, E, h, w) the numbers to gather for the rest, or None; (B, k) a per-image term of
        the cell, or None)."""
        raise NotImplementedError

    def first_input(self, extra: Optional[torch.Tensor], rel_coord: torch.Tensor,
                    rel_cell: Optional[torch.Tensor], cell_term: Optional[torch.Tensor]):
        """Fast path: (N, E) gathered numbers, (N, 2) relative coordinates, and (N, 2) relative
        cells or (N or 1, k) the folded cell term -> ((N, k') input of the rest of the first
        layer, its (D, k') weight)."""
        raise NotImplementedError

    # --- the reference path ---

    def modulation_cell(self, cell: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """The (B, 2) image cells the modulations are made for (None without cell_decode)."""
        if not self.cell_decode:
            return None
        if cell is None:
            raise ValueError(f"this {type(self).__name__} model decodes with the cell size "
                             "(cell_decode=True); pass cell")
        return image_cell(cell)

    def query(self, feat, coord: torch.Tensor, cell: Optional[torch.Tensor] = None
              ) -> torch.Tensor:
        """Reference path: (B, Q, 2) coords and cells -> (B, Q, 3) normalised RGB."""
        m = self.modulate(feat, self.modulation_cell(cell))
        return self.query_modulated(m, coord, cell)

    def query_modulated(self, m: Modulated, coord: torch.Tensor,
                        cell: Optional[torch.Tensor]) -> torch.Tensor:
        """The official training-path query from `modulate`'s output."""
        h, w = m.mod.shape[-2:]
        rel_cell = relative_cell(cell, h, w) if self.cell_decode else None
        preds, areas = [], []
        for (q_codes, q_mod), rel_coord in members([m.codes, m.mod], coord, self.local_ensemble):
            x = self.render_input(q_codes, rel_coord, rel_cell)
            B, Q = x.shape[:2]
            preds.append(self.imnet(x.reshape(B * Q, -1), q_mod.reshape(B * Q, -1))
                         .view(B, Q, -1))
            areas.append(area(rel_coord))
        out = blend(preds, areas, self.local_ensemble)
        return out + sample_bilinear(m.inp, coord) if self.lr_skip else out

    # --- the fast path ---

    @property
    def supports_fast(self) -> bool:
        return True

    def tables(self, m: Modulated, cell: Optional[torch.Tensor]) -> ModTables:
        """Every code's folded modulations (and first-layer numbers) as rows; the (B, 2) image
        cells of the queries folded in where the model allows (None: not folded)."""
        mlp, L, D = self.imnet, self.imnet.hidden_depth, self.imnet.hidden_dim
        B, _, h, w = m.mod.shape
        with torch.autocast(m.mod.device.type, enabled=False):
            mod = m.mod.float().permute(0, 2, 3, 1).reshape(B * h * w, -1)
            ones = mod.new_ones(B * h * w, D)
            fixed, extra, cell_term = self.first_layer(m, cell)
            if fixed is not None:
                fixed = fixed.float().permute(0, 2, 3, 1).reshape(B * h * w, D)
            layers = []
            for layer in range(L):
                lo = layer * D
                scale = mod[:, lo:lo + D] + 1.0 if mlp.mod_scale else ones
                shift = mod[:, mlp.shift_offset() + lo:mlp.shift_offset() + lo + D] \
                    if mlp.mod_shift else 0.0
                bias = mlp.layers[2 * layer].bias.float()
                base = fixed if layer == 0 and fixed is not None else bias
                layers.append(torch.cat([scale, base * scale + shift], dim=1))
            if extra is not None:
                extra = extra.float().permute(0, 2, 3, 1).reshape(B * h * w, -1).contiguous()
        return ModTables(layers, extra, make_lookup(h, w), m.inp,
                         cell is not None and self.cell_decode, cell_term)

    def fast_decoder(self, feat, rows: Optional[Tuple[int, int]] = None) -> Decoder:
        """Tables made once per image and cell (kept for the last cell seen), and the
        buffers the render MLP's layers reuse from call to call."""
        cache: Dict[str, Any] = {}
        workspace: Dict[str, torch.Tensor] = {}

        def decode(coord: torch.Tensor, cell: Optional[torch.Tensor]) -> torch.Tensor:
            key = self.modulation_cell(cell)
            if 'tables' not in cache or not (key is None or torch.equal(key, cache['key'])):
                cache.clear()
                cache['tables'] = self.tables(self.modulate(feat, key), key)
                cache['key'] = key
            return self.query_tables(cache['tables'], coord, cell, workspace)
        return decode

    def query_tables(self, t: ModTables, coord: torch.Tensor, cell: Optional[torch.Tensor],
                     workspace: Optional[Dict[str, torch.Tensor]] = None) -> torch.Tensor:
        """Fast-path query from `tables`: (B, Q, 2) -> (B, Q, 3).

        workspace: buffers kept between calls for the layers' gathered modulations and
            products (used without autograd and autocast); fresh memory for every call costs
            more than the arithmetic of a 16-wide layer (page faults)."""
        mlp, L, D = self.imnet, self.imnet.hidden_depth, self.imnet.hidden_dim
        B, Q = coord.shape[:2]
        h, w = t.lookup.h, t.lookup.w
        code_rows, rel_coord = nearest_codes(t.lookup, coord, self.local_ensemble)
        n = code_rows.shape[1]
        flat = code_rows.view(-1)                            # (B, n, Q) order
        rel_coord = rel_coord.view(B, n * Q, 2)
        extra = None if t.extra is None else t.extra.index_select(0, flat)
        rel_cell = relative_cell(cell, h, w).repeat(1, n, 1).view(-1, 2) \
            if self.cell_decode and not t.cell_folded else None
        cell_term = t.cell_term
        if cell_term is not None and B > 1:
            cell_term = cell_term.repeat_interleave(n * Q, dim=0)
        x, weight = self.first_input(extra, rel_coord.view(-1, 2), rel_cell, cell_term)
        if workspace is not None and not torch.is_grad_enabled() and \
                not torch.is_autocast_enabled(coord.device.type):
            hidden = self.render_layers(t, flat, x, weight, workspace).relu_()
        else:
            hidden = F.linear(x, weight.to(x.dtype))
            for layer in range(L):
                if layer:
                    hidden = F.linear(torch.relu(hidden), mlp.layers[2 * layer].weight)
                mod = t.layers[layer].index_select(0, flat).to(hidden.dtype)
                hidden = torch.addcmul(mod[:, D:], hidden, mod[:, :D])
            hidden = torch.relu(hidden)
        out = mlp.layers[-1](hidden).view(B, n, Q, -1)
        areas = area(rel_coord).view(B, n, Q)
        pred = blend(list(out.unbind(1)), list(areas.unbind(1)), self.local_ensemble)
        return pred + sample_bilinear(t.inp, coord).to(pred.dtype) if self.lr_skip else pred

    def render_layers(self, t: ModTables, flat: torch.Tensor, x: torch.Tensor,
                      weight: torch.Tensor, workspace: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The hidden layers of `query_tables` in two reused buffers, in place: (N, k) input
        of the first layer (and its (D, k) weight) -> (N, D) last hidden layer before its
        ReLU, a view of the workspace (valid until the next call)."""
        mlp, D = self.imnet, self.imnet.hidden_dim
        N = flat.shape[0]
        if workspace.get('mod') is None or workspace['mod'].shape[0] < N or \
                workspace['mod'].dtype != x.dtype or workspace['mod'].device != x.device:
            workspace['mod'] = x.new_empty(N, 2 * D)
            workspace['product'] = x.new_empty(N, D)
        mod, product = workspace['mod'][:N], workspace['product'][:N]
        torch.mm(x, weight.t(), out=product)
        hidden = None
        for layer in range(mlp.hidden_depth):
            if hidden is not None:
                torch.mm(hidden.relu_(), mlp.layers[2 * layer].weight.t(), out=product)
            torch.index_select(t.layers[layer], 0, flat, out=mod)
            hidden = mod[:, D:].addcmul_(product, mod[:, :D])
        return hidden

    # --- CMSR and the official forward ---

    def cmsr_decoder(self, feat, tables: Dict, impl: str = 'fast',
                     chunk_size: Optional[int] = None) -> Decoder:
        """(coord, cell) -> (B, Q, 3) with CMSR (models.cmsr) where the queries are beyond
        the training scales (Q > 16 h w: then they must be the whole output grid, row-major),
        the plain decoding elsewhere. `tables`: scale -> {decode scale: threshold}."""
        check_tables(tables, 'CMSR tables')
        batch = feature_batch(feat)

        def decode(coord: torch.Tensor, cell: Optional[torch.Tensor]) -> torch.Tensor:
            check_queries(coord, cell, batch)
            m, run = self.cmsr_run(feat, cell, impl, chunk_size)
            h, w = m.mod.shape[-2:]
            if coord.shape[1] <= CMSR_MAX_SCALE ** 2 * h * w:
                return run(coord, cell)
            return cmsr_decode(run, self.mod_mean(m), m.inp, coord, tables)
        return decode

    def cmsr_bands(self, feat, tables: Dict, size: Tuple[int, int], rows: int,
                   impl: str = 'fast', chunk_size: Optional[int] = None
                   ) -> Iterator[torch.Tensor]:
        """`cmsr_decoder` of one image's whole (H, W) output grid `size`, in bands of `rows`
        rows made one at a time (models.cmsr.cmsr_bands: no level exists whole). Yields
        (1, rows * W, 3) per band."""
        check_tables(tables, 'CMSR tables')
        if feature_batch(feat) != 1:
            raise ValueError(f"cmsr_bands renders one image, got a batch of "
                             f"{feature_batch(feat)}")
        H, W = size
        cell = torch.tensor([[[2 / H, 2 / W]]], device=first_feature(feat).device)
        m, run = self.cmsr_run(feat, cell, impl, chunk_size)
        h, w = m.mod.shape[-2:]
        if H * W > CMSR_MAX_SCALE ** 2 * h * w:
            yield from cmsr_bands(run, self.mod_mean(m), m.inp, size, rows, tables)
            return
        for r0 in range(0, H, rows):
            coord = band_coords(H, W, r0, min(H, r0 + rows), cell.device)
            yield run(coord, cell.expand_as(coord))

    def cmsr_run(self, feat, cell: Optional[torch.Tensor], impl: str,
                 chunk_size: Optional[int]) -> Tuple[Modulated, Decoder]:
        """The modulations of `feat` for the image cell of `cell`, and the decoding with them
        fixed, in calls of chunk_size queries."""
        m = self.modulate(feat, self.modulation_cell(cell))
        run = self.modulated_decoder(m, impl)
        return m, lambda coord, cell_: decode_in_chunks(run, coord, cell_, chunk_size)

    def modulated_decoder(self, m: Modulated, impl: str = 'fast') -> Decoder:
        """(coord, cell) -> (B, Q, 3) with the modulations of `m` fixed, whatever the queries'
        cells (CMSR's levels and the table maker decode other cells than the image's)."""
        if impl == 'fast':
            t = self.tables(m, None)  # the cell not folded in
            return lambda coord, cell: self.query_tables(t, coord, cell)
        return lambda coord, cell: self.query_modulated(m, coord, cell)

    def mod_mean(self, m: Modulated) -> torch.Tensor:
        """(B, 1, h, w) mean absolute modulation of the second half (the shifts), CMSR's
        measure of how much detail a code carries."""
        return m.mod[:, self.mod_dim // 2:self.mod_dim].abs().mean(dim=1, keepdim=True)

    def forward(self, inp: torch.Tensor, coord: torch.Tensor,
                cell: Optional[torch.Tensor] = None, inp_coord: Optional[torch.Tensor] = None,
                bsize: Optional[int] = None, impl: str = 'reference') -> torch.Tensor:
        """Official signature: (B, 3, h, w), (B, Q, 2), (B, Q, 2) -> (B, Q, 3), decoded in
        calls of `bsize` queries; with the model built with a `cmsr_spec`, in eval mode,
        CMSR beyond the training scales."""
        if inp_coord is not None:
            raise ValueError("inp_coord (custom latent-code coordinates) is not supported")
        feat = self.encode(inp)
        if self.cmsr_spec is not None and not self.training:
            return self.cmsr_decoder(feat, self.cmsr_spec['s2m_tables'], impl, bsize)(
                coord, cell)
        return decode_in_chunks(self.decoder(feat, impl), coord, cell, bsize)
