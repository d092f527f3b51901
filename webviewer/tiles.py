"""What the viewer shows: each model's own output at the screen's pixel centres.

A view level is a scale s: the virtual output image of an h x w input at s is
H x W = round(h s) x round(w s), exactly what `demo.py --scale s` renders, cut into TILE x TILE
tiles. A tile is decoded from the model's features (the encoder runs once per image) at those
output pixels' centres and cells, so what the browser shows is the model's output, not a
resampled one.
"""
import io
import threading
from collections import OrderedDict
from typing import List, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from inference import RenderOptions, Renderer, load_decoder_and_norm
from models import make
from utils.coords import make_coord
from utils.metrics import calc_psnr
from utils.normalization import OFFICIAL_NORM

TILE = 256
MAX_SCALE = 64.0
MAX_REGION_PIXELS = 1 << 24  # the largest region a PSNR or a saved view renders (16 Mpx)


class Pane:
    """One model over one image: its scene (features made once) and its tile renderer."""

    def __init__(self, name: str, renderer: Renderer, image: torch.Tensor):
        model = renderer.model
        if model.whole_grid:
            raise ValueError(f"{name}: {type(model).__name__} attends over every query of the "
                             "image, so its tiles are not independent; use demo.py for it")
        self.name = name
        self.size = tuple(image.shape[-2:])
        self.scene = renderer.scene(image)
        self.lock = threading.Lock()

    @torch.no_grad()
    def render(self, rows: torch.Tensor, cols: torch.Tensor, cell: Tuple[float, float]
               ) -> np.ndarray:
        """(len(rows), len(cols), 3) float32 RGB in [0, 1] at the grid of (row, col)
        coordinates (in (-1, 1) of the input) with the given cell."""
        device = self.scene.device
        coord = torch.stack(torch.meshgrid(rows, cols, indexing='ij'), dim=-1).view(1, -1, 2)
        coord = coord.to(device)
        with self.lock:
            rgb = self.scene.decode(coord, coord.new_tensor(cell).expand_as(coord))
        return rgb.view(len(rows), len(cols), 3).cpu().numpy()


def level_size(size: Tuple[int, int], scale: float) -> Tuple[int, int]:
    """(H, W) of the output at a scale, as demo.py --scale rounds it."""
    return round(size[0] * scale), round(size[1] * scale)


def tile_pixels(pane: Pane, scale: float, tx: int, ty: int) -> np.ndarray:
    """The (<= TILE, <= TILE, 3) uint8 tile (tx, ty) of the output at `scale`."""
    H, W = level_size(pane.size, scale)
    r0, c0 = ty * TILE, tx * TILE
    rows = make_coord((H,))[r0:min(H, r0 + TILE), 0]
    cols = make_coord((W,))[c0:min(W, c0 + TILE), 0]
    rgb = pane.render(rows, cols, (2 / H, 2 / W))
    return (rgb * 255).round().astype(np.uint8)


def region_pixels(pane: Pane, box: Tuple[float, float, float, float], out: Tuple[int, int]
                  ) -> np.ndarray:
    """(out_h, out_w, 3) float RGB of the input region box = (x0, y0, x1, y1) (input pixels)
    rendered at out = (out_h, out_w) pixels: their centres and cells."""
    x0, y0, x1, y1 = box
    h, w = pane.size
    out_h, out_w = out
    ys = y0 + (torch.arange(out_h, dtype=torch.float64) + 0.5) * (y1 - y0) / out_h
    xs = x0 + (torch.arange(out_w, dtype=torch.float64) + 0.5) * (x1 - x0) / out_w
    rows, cols = (-1 + 2 * ys / h).float(), (-1 + 2 * xs / w).float()
    return pane.render(rows, cols, (2 * (y1 - y0) / out_h / h, 2 * (x1 - x0) / out_w / w))


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format='PNG', compress_level=1)
    return buf.getvalue()


def region_psnr(pane: Pane, hr: np.ndarray, box: Tuple[float, float, float, float]) -> float:
    """PSNR (dB, RGB, no shave: test.py's calc_psnr) of the model against the (Hh, Wh, 3)
    float HR image over the HR pixels inside the input region box = (x0, y0, x1, y1), the
    model rendered at the HR's own pixel centres and cells."""
    Hh, Wh = hr.shape[:2]
    h, w = pane.size
    x0, y0, x1, y1 = box
    c0, c1 = max(0, int(np.floor(x0 * Wh / w))), min(Wh, int(np.ceil(x1 * Wh / w)))
    r0, r1 = max(0, int(np.floor(y0 * Hh / h))), min(Hh, int(np.ceil(y1 * Hh / h)))
    if r1 <= r0 or c1 <= c0:
        raise ValueError(f"region {box} holds no HR pixel")
    if (r1 - r0) * (c1 - c0) > MAX_REGION_PIXELS:
        raise ValueError(f"region of {(r1 - r0) * (c1 - c0)} HR pixels is over the "
                         f"{MAX_REGION_PIXELS} a PSNR renders")
    rows = make_coord((Hh,))[r0:r1, 0]
    cols = make_coord((Wh,))[c0:c1, 0]
    sr = torch.from_numpy(pane.render(rows, cols, (2 / Hh, 2 / Wh)))
    gt = torch.from_numpy(hr[r0:r1, c0:c1])
    return calc_psnr(sr.permute(2, 0, 1).unsqueeze(0), gt.permute(2, 0, 1).unsqueeze(0)).item()


class TileCache:
    """PNG bytes of rendered tiles, least recently used dropped beyond `max_bytes`."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.items: 'OrderedDict[tuple, bytes]' = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple) -> Optional[bytes]:
        with self.lock:
            data = self.items.get(key)
            if data is not None:
                self.items.move_to_end(key)
            return data

    def put(self, key: tuple, data: bytes) -> None:
        with self.lock:
            if key in self.items:
                return
            self.items[key] = data
            self.bytes += len(data)
            while self.bytes > self.max_bytes and self.items:
                _, old = self.items.popitem(last=False)
                self.bytes -= len(old)


def load_panes(image: torch.Tensor, models: List[str], bicubic: bool, precision: str
               ) -> List[Pane]:
    """A pane per checkpoint (named by its file, run with its own data_norm and LTE's window
    for SwinIR encoders) and one for bicubic when asked; image (1, 3, h, w) in [0, 1]."""
    panes = []
    for path in models:
        model, data_norm = load_decoder_and_norm(path, image.device)
        options = RenderOptions(precision=precision, window=model.encoder_window)
        panes.append(Pane(path.rsplit('/', 1)[-1], Renderer(model, data_norm, options), image))
    if bicubic:
        model = make({'name': 'bicubic'}).to(image.device)
        panes.append(Pane('bicubic', Renderer(model, OFFICIAL_NORM), image))
    return panes
