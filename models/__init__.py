"""Models: encoders (EDSR, RDN), the MLP decoder, LIIF and the MetaSR baseline."""
from .models import MODELS, make, register
from . import edsr
from . import rdn
from . import mlp
from . import liif
from . import metasr
from . import bicubic
from .query import decode_in_chunks, prepare_query, query_in_chunks
