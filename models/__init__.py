"""Models: encoders (EDSR, RDN, SwinIR), decoders on one interface (LIIF, MetaSR, LTE,
lte-fast, SRNO, LM-LIIF, LM-LTE, bicubic) and their parts (MLP, Galerkin attention, LMF's
modulated render MLP and CMSR)."""
from .models import MODELS, make, register
from .decoder import IMPLS, Decoder, ImplicitDecoder, check_impl
from . import edsr
from . import rdn
from . import swinir
from . import mlp
from . import galerkin
from . import liif
from . import metasr
from . import lte
from . import lte_fast
from . import sronet
from . import lmmlp
from . import lmliif
from . import lmlte
from . import bicubic
from . import posenc
from . import clit
from . import ciaosr
