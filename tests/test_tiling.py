"""Tiled encoding against the whole-image encoder (inference.tiling)."""
import pytest
import torch

import models
from conftest import shared_path
from inference.tiling import encode_tiled, receptive_radius
from utils import load_checkpoint

TILE_TOLERANCE = 1e-5


def seeded(spec):
    torch.manual_seed(0)
    model = models.make(spec).eval()
    with torch.no_grad():  # random weights of a trained model's magnitude on every layer
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


ENCODERS = {
    'edsr-baseline': {'name': 'edsr-baseline', 'args': {'n_resblocks': 3, 'n_feats': 8,
                                                        'no_upsampling': True}},
    'edsr': {'name': 'edsr', 'args': {'n_resblocks': 2, 'n_feats': 8, 'no_upsampling': True}},
    'rdn': {'name': 'rdn', 'args': {'G0': 8, 'RDNconfig': 'A', 'no_upsampling': True}},
}


def test_receptive_radius_counts_every_convolution():
    # EDSR-baseline: head, 2 per block, body tail; RDN 'A': 2 shallow, 20 blocks of 6, GFF 3x3.
    assert receptive_radius(seeded(ENCODERS['edsr-baseline'])) == 1 + 2 * 3 + 1
    assert receptive_radius(seeded(ENCODERS['rdn'])) == 2 + 20 * 6 + 1


@pytest.mark.parametrize('name,tile', [('edsr-baseline', 5), ('edsr-baseline', 16),
                                       ('edsr-baseline', 23), ('edsr', 7), ('edsr', 16),
                                       ('rdn', 100)])
def test_tiled_encoding_equals_whole_image_encoding(name, tile):
    encoder = seeded(ENCODERS[name])
    torch.manual_seed(1)
    radius = receptive_radius(encoder)
    # Taller than a tile plus two halos (so some tiles see neither border), not a multiple of
    # the tile in either direction.
    inp = torch.rand(1, 3, tile + 2 * radius + 7, tile + 13) * 2 - 1
    with torch.no_grad():
        whole = encoder(inp)
    tiled = encode_tiled(encoder, inp, tile)
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().max().item() < TILE_TOLERANCE


def test_official_checkpoint_encoder_tiles_exactly():
    spec = load_checkpoint(shared_path('pretrained', 'edsr-baseline-liif.pth'))['model']
    encoder = models.make(spec, load_sd=True).encoder.eval()
    torch.manual_seed(2)
    inp = torch.rand(1, 3, 97, 83) * 2 - 1
    with torch.no_grad():
        whole = encoder(inp)
    tiled = encode_tiled(encoder, inp, tile=24)
    assert (tiled - whole).abs().max().item() < TILE_TOLERANCE


def test_halo_below_the_receptive_radius_is_refused():
    encoder = seeded(ENCODERS['edsr-baseline'])
    with pytest.raises(ValueError, match=r"halo 3 is smaller than the encoder's receptive "
                                         r"radius 8"):
        encode_tiled(encoder, torch.zeros(1, 3, 20, 20), tile=8, halo=3)


def test_attention_and_upsampling_encoders_are_refused():
    swinir = models.make({'name': 'swinir', 'args': {'img_size': 8, 'window_size': 4,
                                                     'embed_dim': 8, 'depths': [1],
                                                     'num_heads': [2]}})
    with pytest.raises(ValueError, match="window attention"):
        receptive_radius(swinir)
    upsampler = models.make({'name': 'edsr-baseline', 'args': {'n_resblocks': 1, 'n_feats': 4,
                                                               'scale': 2}})
    with pytest.raises(ValueError, match="upsampling"):
        receptive_radius(upsampler)
