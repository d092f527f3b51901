"""Running models over queries: path and chunk choice, LTE's window padding, banded
rendering and PSNR evaluation. Sits between `models` (which it drives only through the
`models.ImplicitDecoder` interface) and the scripts."""
from .chunks import decode_in_chunks, effective_chunk_size, predict
from .window import pad_to_window, to_padded_domain, window_of
from .render import band_coords, render_bands
from .evaluation import eval_psnr, normalisers
from .loading import decoder_names, load_decoder
