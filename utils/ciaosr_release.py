"""CiaoSR's released weights, read as they are: mmedit's `{'meta', 'state_dict':
{'generator.<key>': ...}, 'optimizer'}` or a bare generator state dict, with or without a
`module.` prefix. The generator's arguments are read off the keys and shapes (a release holds
no config), giving our checkpoint format {'model': {'name': 'ciaosr', 'args', 'sd'}} with
CiaoSR's data_norm. Missing or unexpected keys are then errors of the strict load (the
official loader only warns)."""
import re
from typing import Any, Dict, List, Optional

import torch

# CiaoSR's data normalisation (every official config): x - the DIV2K mean, std 1.
RGB_MEAN = [0.4488, 0.4371, 0.4040]
CIAOSR_NORM = {'inp': {'sub': RGB_MEAN, 'div': [1.0, 1.0, 1.0]},
               'gt': {'sub': RGB_MEAN, 'div': [1.0, 1.0, 1.0]}}
PREFIXES = ('module.', 'generator.')


def strip_prefixes(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Keys without a leading `module.` and then `generator.` (mmcv's load_checkpoint drops
    the first; the restorer's state dict has the second)."""
    for prefix in PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def count(sd: Dict[str, Any], pattern: str) -> int:
    """How many distinct indices {i} the keys matching `pattern` (a regex with one group)
    have."""
    return len({m.group(1) for k in sd for m in [re.fullmatch(pattern, k)] if m})


def hidden_list(sd: Dict[str, torch.Tensor], name: str) -> List[int]:
    n = count(sd, rf'{name}\.layers\.(\d+)\.weight')
    return [int(sd[f'{name}.layers.{2 * i}.weight'].shape[0]) for i in range(n - 1)]


def encoder_args(sd: Dict[str, torch.Tensor]) -> Dict[str, Any]:
    """mmedit's encoder config, read off the encoder's keys."""
    if 'sfe1.weight' in sd:
        return {'type': 'RDN', 'in_channels': int(sd['sfe1.weight'].shape[1]),
                'mid_channels': int(sd['sfe1.weight'].shape[0]),
                'num_blocks': count(sd, r'rdbs\.(\d+)\.lff\.weight'),
                'num_layers': count(sd, r'rdbs\.0\.layers\.(\d+)\.conv\.weight'),
                'channel_growth': int(sd['rdbs.0.layers.0.conv.weight'].shape[0])}
    if 'patch_embed.norm.weight' in sd:
        c = int(sd['conv_first.weight'].shape[0])
        layers = count(sd, r'layers\.(\d+)\.residual_group\.blocks\.0\.norm1\.weight')
        table = sd['layers.0.residual_group.blocks.0.attn.relative_position_bias_table']
        window = (round(table.shape[0] ** 0.5) + 1) // 2
        mask = next((v for k, v in sd.items() if k.endswith('attn_mask')), None)
        img = window * round(mask.shape[0] ** 0.5) if mask is not None else 64
        return {'type': 'SwinIR', 'in_chans': int(sd['conv_first.weight'].shape[1]),
                'img_size': img, 'window_size': window, 'embed_dim': c,
                'depths': [count(sd, rf'layers\.{i}\.residual_group\.blocks\.(\d+)\.norm1\.weight')
                           for i in range(layers)],
                'num_heads': [int(sd[f'layers.{i}.residual_group.blocks.0.attn.'
                                     'relative_position_bias_table'].shape[1])
                              for i in range(layers)],
                'mlp_ratio': sd['layers.0.residual_group.blocks.0.mlp.fc1.weight'].shape[0] / c,
                'resi_connection': '1conv' if 'conv_after_body.weight' in sd else '3conv'}
    if 'conv_first.weight' in sd:
        return {'type': 'EDSR', 'in_channels': int(sd['conv_first.weight'].shape[1]),
                'mid_channels': int(sd['conv_first.weight'].shape[0]),
                'num_blocks': count(sd, r'body\.(\d+)\.conv1\.weight')}
    raise ValueError("a CiaoSR generator without encoder keys (conv_first, sfe1 or "
                     "patch_embed): not a CiaoSR release")


def read_release(obj: Any, path: str) -> Optional[Dict[str, Any]]:
    """Our checkpoint format of a CiaoSR release, or None if `obj` is not one."""
    if not isinstance(obj, dict):
        return None
    sd = obj.get('state_dict', obj)
    if not isinstance(sd, dict) or not sd or \
            not all(isinstance(v, torch.Tensor) for v in sd.values()):
        return None
    sd = strip_prefixes(sd)
    if 'imnet_k.layers.0.weight' not in sd:
        return None
    try:
        args = {'encoder': encoder_args(sd),
                **{name: {'hidden_list': hidden_list(sd, name)}
                   for name in ('imnet_q', 'imnet_k', 'imnet_v')}}
    except (KeyError, IndexError) as e:
        raise ValueError(f"{path}: a CiaoSR release without the key {e}, so its generator's "
                         "shape cannot be read") from None
    if args['encoder']['type'] == 'SwinIR':
        args['window_size'] = args['encoder']['window_size']
    return {'model': {'name': 'ciaosr', 'args': args, 'sd': sd}, 'data_norm': CIAOSR_NORM}
