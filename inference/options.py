"""How to run a model (RenderOptions), and the command-line flags of demo.py, test.py, the
viewer and the benchmarks that set them."""
import argparse
from dataclasses import dataclass
from typing import Dict, Optional, Tuple, Union

from models import IMPLS, check_impl
from models.cmsr import check_tables
from utils.cli import Flag, memory_size, number
from utils.devices import PRECISIONS, check_precision


@dataclass(frozen=True)
class RenderOptions:
    """How to run a model. Defaults: the fast path in float32, the device's chunks, the
    whole image when it fits the default memory budget.

    impl: 'fast' or 'reference' query path.
    precision: 'fp32', or 'bf16'/'fp16' autocast around the decoder (the encoder, and the
        features made from its codes, stay float32).
    chunk_size: the most queries per decoder call (and, in `bands`, output pixels per band);
        None: the memory plan's (inference.plan). Never changes the output of a model with
        independent queries.
    window: LTE's SwinIR protocol, mirror-pad inputs to a multiple of this (0: off).
    encoder_tile: encode in tiles of (rows, columns) codes, or N for N x N (the same codes);
        None: band_rows x band_rows if band_rows is given, else as max_memory decides.
    band_rows: hold the latent codes in bands of this many rows in `bands` (inference.bands;
        not for whole_grid models); None: as max_memory decides.
    max_memory: bytes of working memory for the whole render, a limit (ValueError if too
        small); None: inference.plan's default budget, as a guide.
    compile: run the decoder under torch.compile in chunks of one static shape
        (inference.compile.CompiledDecoder; compiled once per image size, falls back with a
        warning where it cannot compile). Not for whole_grid models.
    cmsr: LMF's CMSR scale-to-mean tables ({target scale: {decode scale: threshold}}, see
        models.cmsr and inference.cmsr.load_tables), or None. Beyond the training scales an
        LMF model then renders the whole output grid at once (CMSR's levels are whole
        images): `bands` renders it whole and yields it in bands, `Scene.decode` takes the
        whole grid (row-major) in one call. Not with compile or window.
    """
    impl: str = 'fast'
    precision: str = 'fp32'
    chunk_size: Optional[int] = None
    window: int = 0
    encoder_tile: Optional[Union[int, Tuple[int, int]]] = None
    band_rows: Optional[int] = None
    max_memory: Optional[float] = None
    compile: bool = False
    cmsr: Optional[Dict[float, Dict[float, float]]] = None

    def __post_init__(self):
        if isinstance(self.encoder_tile, int):
            object.__setattr__(self, 'encoder_tile', (self.encoder_tile, self.encoder_tile))
        check_impl(self.impl)
        check_precision(self.precision)
        if self.chunk_size is not None and (isinstance(self.chunk_size, bool) or not isinstance(
                self.chunk_size, int) or self.chunk_size < 1):
            raise ValueError(f"query chunk size must be an integer >= 1, got "
                             f"{self.chunk_size!r}")
        if self.window < 0:
            raise ValueError(f"window must be >= 0, got {self.window}")
        if self.encoder_tile is not None and min(self.encoder_tile) < 1:
            raise ValueError(f"encoder tiles must be >= 1 code a side, got {self.encoder_tile}")
        if self.band_rows is not None and self.band_rows < 1:
            raise ValueError(f"band_rows must be >= 1, got {self.band_rows}")
        if self.cmsr is not None:
            check_tables(self.cmsr, 'CMSR tables')
            if self.compile or self.window:
                raise ValueError("CMSR renders whole images at several scales: it does not run "
                                 "with compile or with window padding")


# The flags of RenderOptions (utils.cli.Flag; read them with render_options).
IMPL: Flag = (('--impl',), dict(choices=IMPLS, default='fast',
                                help='query path: fast, or the paper-faithful reference '
                                     '(default: %(default)s)'))
RENDER_FLAGS: Tuple[Flag, ...] = (
    IMPL,
    (('--precision',), dict(choices=list(PRECISIONS), default='fp32',
                            help='fp32, or bf16/fp16 autocast for the decoder (default: '
                                 '%(default)s)')),
    (('--max-memory',), dict(
        type=memory_size, default=None,
        help='working memory of the whole process beyond the interpreter, e.g. 1GB: inputs '
             'too large to run whole are encoded in tiles (and, in demo.py, decoded in bands) '
             "sized to fit, with the same output (default: half the memory available, or 80%% "
             "of the GPU's free memory)")),
    (('--encoder-tile',), dict(
        type=number(int, 0), default=0, metavar='N',
        help='force encoder tiles of N x N codes with a halo (in demo.py, and latent bands of '
             'N rows), the same output; 0 lets --max-memory decide (default: 0)')),
    (('--compile',), dict(
        action='store_true',
        help='run the decoder under torch.compile: compiles on the first chunk (about 10-30 s '
             'on a CPU, once per image size; cached on disk by torch), then faster (1.4x to '
             '1.5x in bf16 on our CPU); falls back with a warning where it cannot compile')),
)
CHUNK_SIZE: Flag = (('--chunk-size', '--tile'), dict(
    dest='chunk_size', type=number(int, 1), default=None,
    help="most output pixels decoded at once, in bands of whole rows (default: the memory "
         "plan's: 4096 queries per call for the fast path on a CPU, bands of 65536 pixels; on "
         "a GPU as many as its memory budget allows)"))


def render_options(args: argparse.Namespace, bands: bool = False, window: int = 0,
                   cmsr=None) -> RenderOptions:
    """RenderOptions from RENDER_FLAGS (bands: demo.py's, with CHUNK_SIZE, where
    --encoder-tile also sets the latent bands); ValueError for a bad value."""
    if args.encoder_tile < 0:
        raise ValueError(f"--encoder-tile must be >= 0, got {args.encoder_tile}")
    chunk = getattr(args, 'chunk_size', None)
    if chunk is not None and chunk < 1:
        raise ValueError(f"--chunk-size must be >= 1, got {chunk}")
    tile = args.encoder_tile or None
    return RenderOptions(impl=args.impl, precision=args.precision, chunk_size=chunk,
                         window=window, encoder_tile=tile,
                         band_rows=tile if bands else None,
                         max_memory=args.max_memory, compile=args.compile, cmsr=cmsr)
