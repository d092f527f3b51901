"""Running models over queries: the memory plan (plan), the renderer (normalisation, window
padding, encoding in tiles, query path, precision, chunks; renderer, with options, tiling,
bands, window, compile), PSNR evaluation on it (evaluation), loading checkpoints (loading) and
LMF's CMSR tables (cmsr). Sits between `models` (which it drives only through the
`models.ImplicitDecoder` interface) and the scripts."""
from .options import RenderOptions
from .plan import Plan, describe
from .renderer import Renderer, Scene, band_coords, render_bands
from .evaluation import eval_psnr
from .loading import decoder_names, load_decoder, load_decoder_and_norm
