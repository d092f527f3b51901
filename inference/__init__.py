"""Running models over queries: the renderer (normalisation, window padding, encoding in tiles,
query path, precision, chunk policy) and PSNR evaluation on it. Sits between `models` (which it
drives only through the `models.ImplicitDecoder` interface) and the scripts."""
from .chunks import chunk_policy, decode_in_chunks, predict
from .normalization import IDENTITY_NORM, OFFICIAL_NORM, norm_of_checkpoint, normalisers
from .window import pad_to_window, to_padded_domain, window_of
from .renderer import RenderOptions, Renderer, Scene, band_coords, render_bands
from .evaluation import eval_psnr
from .loading import decoder_names, load_decoder, load_decoder_and_norm
