"""Bad input across demo.py, test.py, train_liif.py and the scripts (the README's "Bad input"
table, printed from CASES by `python tests/test_bad_inputs.py`): each gives one `error:` line
and exit status 2, with no traceback, and leaves every file as it was (no partial output, no
temporary file, no rewritten config, no changed permissions)."""
import os
import struct
import sys
import zlib
from typing import Callable, List, NamedTuple

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import REPO, shared_path  # noqa: E402


# 9 levels of 10 aliases each: 10^9 values if expanded.
ALIAS_BOMB = 'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n' + ''.join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8))
ALIAS_BOMB_FLOW = '[' + ', '.join(['&a [1, 1]'] + ['*a'] * 200) + ']'


class Case(NamedTuple):
    script: str
    what: str
    argv: Callable[['Workspace'], List[str]]
    message: str  # a substring of the error line


class Workspace:
    """Small inputs in a temporary folder, made on demand."""

    def __init__(self, root):
        self.root = str(root)

    def path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def image(self, name: str = 'in.png', h: int = 8, w: int = 8) -> str:
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(self.path(name))
        return self.path(name)

    def text(self, name: str) -> str:
        with open(self.path(name), 'w') as f:
            f.write('not what it should be')
        return self.path(name)

    def folder_with_image(self, name: str, *files: str) -> str:
        os.makedirs(self.path(name), exist_ok=True)
        for file in files or ('a.png',):
            self.image(f'{name}/{file}', 16, 16)
        return self.path(name)

    def png_header(self, name: str, w: int, h: int) -> str:
        """A PNG whose header says w x h (no pixel data): size checks must come first."""
        def chunk(kind: bytes, body: bytes) -> bytes:
            return (struct.pack('>I', len(body)) + kind + body
                    + struct.pack('>I', zlib.crc32(kind + body)))
        data = (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0))
                + chunk(b'IDAT', zlib.compress(b'\0' * 64)) + chunk(b'IEND', b''))
        with open(self.path(name), 'wb') as f:
            f.write(data)
        return self.path(name)

    def raw(self, name: str, text: str, encoding: str = 'utf-8') -> str:
        """A file holding exactly `text` (YAML written by hand: duplicate keys, bombs)."""
        with open(self.path(name), 'w', encoding=encoding) as f:
            f.write(text)
        return self.path(name)

    def appended(self, path: str, text: str) -> str:
        with open(path, 'a') as f:
            f.write(text)
        return path

    def bomb_folder(self, name: str) -> str:
        """A folder whose one image's header declares 100000x100000 (1 kB on disk; 20000x20000
        too, but whether that fits depends on the machine's memory)."""
        os.makedirs(self.path(name), exist_ok=True)
        return os.path.dirname(self.png_header(f'{name}/a.png', 100000, 100000))

    def run_checkpoint(self, config_text: str) -> str:
        """The tiny checkpoint in a run folder whose config.yaml holds `config_text`."""
        os.makedirs(self.path('run'), exist_ok=True)
        self.raw('run/config.yaml', config_text)
        ckpt = torch.load(self.tiny(), map_location='cpu', weights_only=True)
        torch.save(ckpt, self.path('run/epoch-last.pth'))
        return self.path('run/epoch-last.pth')

    def tiff(self, name: str, data) -> str:
        import tifffile
        tifffile.imwrite(self.path(name), data)
        return self.path(name)

    def pairs(self, lr_names: List[str], hr_names: List[str]) -> str:
        """A test config over LR and HR folders holding these file names."""
        config = self.test_config()
        os.remove(self.path('lr/ax4.png'))
        os.remove(self.path('hr/a.png'))
        for name in lr_names:
            self.image(f'lr/{name}', 8, 8)
        for name in hr_names:
            self.image(f'hr/{name}', 32, 32)
        return config

    def checkpoint(self, mutate: Callable[[dict], None], name: str = 'ckpt.pth') -> str:
        ckpt = torch.load(shared_path('reference', 'vectors', 'tiny_liif.pth'),
                          map_location='cpu', weights_only=True)
        mutate(ckpt)
        torch.save(ckpt, self.path(name))
        return self.path(name)

    def tiny(self) -> str:
        return shared_path('reference', 'vectors', 'tiny_liif.pth')

    def tiny_hr_at_x6(self) -> str:
        """A test config scoring a 4x4 HR image at x6 (downsampled on the fly)."""
        os.makedirs(self.path('small'))
        self.image('small/a.png', 4, 4)
        return self.test_config(lambda c: (
            c.update(eval_type='benchmark-6'),
            c['test_dataset'].update(
                dataset={'name': 'image-folder', 'args': {'root_path': self.path('small')}},
                wrapper={'name': 'sr-implicit-downsampled', 'args': {'scale_min': 6}})))

    def json(self, name: str, value) -> str:
        import json
        with open(self.path(name), 'w') as f:
            json.dump(value, f)
        return self.path(name)

    def protected(self, name: str) -> str:
        path = self.image(name)
        os.chmod(path, 0o444)
        return path

    def cmsr_table(self) -> str:
        with open(self.path('table.yaml'), 'w') as f:
            f.write('12: {1: 0.1, 2: 0.2}\n')
        return self.path('table.yaml')

    def test_config(self, mutate: Callable[[dict], None] = lambda c: None, lr_size: int = 8,
                    hr_size: int = 32) -> str:
        os.makedirs(self.path('lr'), exist_ok=True)
        os.makedirs(self.path('hr'), exist_ok=True)
        self.image('lr/ax4.png', lr_size, lr_size)
        self.image('hr/a.png', hr_size, hr_size)
        config = {'test_dataset': {
            'dataset': {'name': 'paired-image-folders', 'args': {
                'root_path_1': self.path('lr'), 'root_path_2': self.path('hr')}},
            'wrapper': {'name': 'sr-implicit-paired', 'args': {}}, 'batch_size': 1},
            'data_norm': {'inp': {'sub': [0.5], 'div': [0.5]}, 'gt': {'sub': [0.5], 'div': [0.5]}},
            'eval_type': 'benchmark-4', 'eval_bsize': 30000}
        mutate(config)
        with open(self.path('test.yaml'), 'w') as f:
            yaml.safe_dump(config, f)
        return self.path('test.yaml')

    def train_config(self, mutate: Callable[[dict], None] = lambda c: None,
                     name: str = 'train.yaml') -> str:
        os.makedirs(self.path('train'), exist_ok=True)
        for i in range(2):
            self.image(f'train/{i}.png', 24, 24)
        wrapper = {'name': 'sr-implicit-downsampled', 'args': {
            'inp_size': 8, 'scale_max': 3, 'sample_q': 16}}
        config = {
            'train_dataset': {'dataset': {'name': 'image-folder', 'args': {
                'root_path': self.path('train')}}, 'wrapper': wrapper, 'batch_size': 2},
            'model': {'name': 'liif', 'args': {
                'encoder_spec': {'name': 'edsr-baseline', 'args': {
                    'n_resblocks': 1, 'n_feats': 8, 'no_upsampling': True}},
                'imnet_spec': {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [16]}}}},
            'optimizer': {'name': 'adam', 'args': {'lr': 1e-3}},
            'epoch_max': 1, 'multi_step_lr': {'milestones': [1], 'gamma': 0.5}}
        mutate(config)
        with open(self.path(name), 'w') as f:
            yaml.safe_dump(config, f)
        return self.path(name)

    def trained_run(self) -> str:
        """A finished one-epoch run in save/train; returns its config."""
        import train_liif
        config = self.train_config()
        assert train_liif.main(['--config', config, '--save-dir', self.path('save'),
                                '--device', 'cpu', '--quiet']) == 0
        return config


def demo(w: Workspace, *argv: str) -> List[str]:
    given = dict(zip(argv[::2], argv[1::2]))
    defaults = {'--input': lambda: w.image(), '--output': lambda: w.path('out.png'),
                '--model': w.tiny}
    return list(argv) + [x for flag, make in defaults.items() if flag not in given
                         for x in (flag, make())] + ['--quiet']


def evaluate(w: Workspace, config: str, *argv: str) -> List[str]:
    given = dict(zip(argv[::2], argv[1::2]))
    return ['--config', config, '--model', given.get('--model', w.tiny()), '--device', 'cpu',
            '--quiet'] + [a for a in argv if a not in ('--model', given.get('--model'))]


def train(w: Workspace, config: str, *argv: str) -> List[str]:
    return ['--config', config, '--save-dir', w.path('save'), '--device', 'cpu',
            '--quiet', *argv]


def set_arg(path: str, value):
    """A config mutation setting the dotted `path` to `value`."""
    def mutate(config):
        node = config
        keys = path.split('.')
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return mutate


def resized_lr(config):
    Image.open(config['test_dataset']['dataset']['args']['root_path_1'] + '/ax4.png').resize(
        (7, 7)).save(config['test_dataset']['dataset']['args']['root_path_1'] + '/ax4.png')


CASES = [
    # demo.py
    Case('demo.py', 'output path is the input file',
         lambda w: demo(w, '--input', w.image(), '--output', w.image()), 'is the input file'),
    Case('demo.py', '--cmsr table that does not exist',
         lambda w: demo(w, '--cmsr', w.path('none.yaml')), 'CMSR table not found'),
    Case('demo.py', '--cmsr with a model without modulations (LIIF)',
         lambda w: demo(w, '--cmsr', w.cmsr_table()), '--cmsr needs an LMF model'),
    Case('scripts/make_cmsr_table.py', 'a model without modulations (LIIF)',
         lambda w: ['--config', w.test_config(), '--model', w.tiny(), '--out',
                    w.path('s2m.yaml'), '--device', 'cpu', '--quiet'],
         'CMSR tables are made for LMF models'),
    Case('demo.py', 'write-protected output without --overwrite',
         lambda w: demo(w, '--output', w.protected('out.png')), 'is write-protected'),
    Case('demo.py', 'default output folder, failing before the render (no outputs/ made)',
         lambda w: ['--input', w.image(), '--model', w.path('none.pth'), '--quiet'],
         'checkpoint not found'),
    Case('demo.py', '--scale 1e12 (larger than any format)',
         lambda w: demo(w, '--scale', '1e12'), 'no format holds it: ask for a smaller'),
    Case('demo.py', 'output path is a folder',
         lambda w: demo(w, '--output', w.path('')), 'is a folder, not a file'),
    Case('demo.py', 'output .psd (a format PIL cannot write)',
         lambda w: demo(w, '--output', w.path('out.psd')), "cannot write '.psd' images"),
    Case('demo.py', 'output .ico (capped at 256x256)',
         lambda w: demo(w, '--output', w.path('out.ico')), "cannot write '.ico' images"),
    Case('demo.py', 'JPEG wider than 65535',
         lambda w: demo(w, '--resolution', '100,70000', '--output', w.path('o.jpg')),
         'JPEG images are at most 65535 pixels a side'),
    Case('demo.py', 'WebP wider than 16383',
         lambda w: demo(w, '--resolution', '20,20000', '--output', w.path('o.webp')),
         'WEBP images are at most 16383 pixels a side'),
    Case('demo.py', 'JPEG (encoded in memory) above --max-memory',
         lambda w: demo(w, '--resolution', '4000,4000', '--output', w.path('o.jpg'),
                        '--max-memory', '20MB'), 'is encoded from memory'),
    Case('demo.py', '15000x15000 input above --max-memory (checked from the header)',
         lambda w: demo(w, '--input', w.png_header('big.png', 15000, 15000),
                        '--max-memory', '1GB'), 'decoding it needs'),
    Case('demo.py', 'input that is not an image',
         lambda w: demo(w, '--input', w.checkpoint(lambda c: None, 'x.png')),
         'cannot read image'),
    Case('demo.py', 'checkpoint with NaN weights',
         lambda w: demo(w, '--model', w.checkpoint(
             lambda c: c['model']['sd']['encoder.head.0.weight'].fill_(float('nan')))),
         'holds NaN or infinite values'),
    Case('demo.py', 'checkpoint whose args ask for 1e9 residual blocks',
         lambda w: demo(w, '--model', w.checkpoint(set_arg(
             'model.args.encoder_spec.args.n_resblocks', 10 ** 9))), 'build more than'),
    Case('demo.py', "checkpoint with 'sd: None'",
         lambda w: demo(w, '--model', w.checkpoint(set_arg('model.sd', None))),
         'model.sd: expected a mapping of tensors, got null'),
    Case('demo.py', 'checkpoint with a string where a number belongs',
         lambda w: demo(w, '--model', w.checkpoint(set_arg(
             'model.args.encoder_spec.args.n_feats', '8'))),
         "n_feats: expected an integer (>= 1), got '8'"),
    Case('demo.py', 'checkpoint of an unknown model',
         lambda w: demo(w, '--model', w.checkpoint(set_arg('model.name', 'liff'))),
         "unknown model 'liff'"),
    Case('demo.py', '--resolution 10x10',
         lambda w: demo(w, '--resolution', '10x10'), '--resolution must be H,W'),
    Case('demo.py', '--scale abc', lambda w: demo(w, '--scale', 'abc'),
         '--scale must be a number'),
    Case('demo.py', '--chunk-size 0', lambda w: demo(w, '--chunk-size', '0'),
         "argument --chunk-size/--tile: must be an integer >= 1, got '0'"),
    Case('demo.py', '--max-memory 1B', lambda w: demo(w, '--max-memory', '1B'),
         'above the 1 B memory limit'),
    Case('demo.py', '--device cuda:99', lambda w: demo(w, '--device', 'cuda:99'),
         "'cuda:99' asked for"),
    # test.py
    Case('test.py', 'typo in an optional key (eval_tpye)',
         lambda w: evaluate(w, w.test_config(lambda c: c.update(eval_tpye=c.pop('eval_type')))),
         'eval_tpye: unknown key; allowed here: data_norm, eval_bsize, eval_type, test_dataset'),
    Case('test.py', 'typo in an optional key (data_nrom)',
         lambda w: evaluate(w, w.test_config(lambda c: c.update(data_nrom=c.pop('data_norm')))),
         'data_nrom: unknown key'),
    Case('test.py', 'typo given with --set',
         lambda w: evaluate(w, w.test_config(), '--set', 'eval_tpye=benchmark-4'),
         'eval_tpye: unknown key; allowed here: data_norm, eval_bsize, eval_type, test_dataset '
         '(set by --set)'),
    Case('test.py', 'eval_bsize: abc', lambda w: evaluate(w, w.test_config(
        set_arg('eval_bsize', 'abc'))), "eval_bsize: expected an integer (>= 1), got 'abc'"),
    Case('test.py', 'eval_bsize: 1.5', lambda w: evaluate(w, w.test_config(
        set_arg('eval_bsize', 1.5))), 'eval_bsize: expected an integer (>= 1), got 1.5'),
    Case('test.py', 'test_dataset: 5', lambda w: evaluate(w, w.test_config(
        set_arg('test_dataset', 5))), 'test_dataset: expected a mapping, got 5'),
    Case('test.py', 'test batch_size: 2', lambda w: evaluate(w, w.test_config(
        set_arg('test_dataset.batch_size', 2))),
        'test_dataset.batch_size: expected an integer equal to 1, got 2'),
    Case('test.py', "eval_type: bench-4", lambda w: evaluate(w, w.test_config(
        set_arg('eval_type', 'bench-4'))), "eval_type: expected 'div2k-<scale>'"),
    Case('test.py', 'LR image resized (does not match HR / scale)',
         lambda w: evaluate(w, w.test_config(resized_lr)), 'not an integer-scale pair'),
    Case('test.py', 'LR of another scale (X2 files with benchmark-4)',
         lambda w: evaluate(w, w.test_config(lr_size=16)), 'needs HR images of 4x the input'),
    Case('test.py', '--cmsr with a model without modulations (LIIF)',
         lambda w: evaluate(w, w.test_config(), '--cmsr', w.cmsr_table()),
         '--cmsr needs an LMF model (lmliif, lmlte)'),
    Case('test.py', '--cmsr table that is not a table',
         lambda w: evaluate(w, w.test_config(), '--cmsr', w.text('table.yaml')),
         'must be a YAML mapping, got str'),
    Case('test.py', 'HR too small for the shave border (8x8 at x4)',
         lambda w: evaluate(w, w.test_config(lr_size=2, hr_size=8)),
         'too small for the benchmark protocol at x4'),
    Case('test.py', 'two LR files that pair with one HR file',
         lambda w: evaluate(w, w.test_config(lambda c: (w.image('lr/a.png', 8, 8),
                                                        w.image('hr/b.png', 32, 32)))),
         "'a.png' and 'ax4.png' both pair with 'a.png'"),
    Case('test.py', '--scale-max nan', lambda w: evaluate(w, w.test_config(), '--scale-max',
                                                          'nan'),
         "argument --scale-max: must be a finite number > 0, got 'nan'"),
    Case('test.py', 'HR image smaller than the scale (4x4 at x6)',
         lambda w: evaluate(w, w.tiny_hr_at_x6()), 'is smaller than the scale x6'),
    Case('test.py', 'an error in a data-loader worker (--num-workers 1)',
         lambda w: evaluate(w, w.tiny_hr_at_x6(), '--num-workers', '1'),
         'is smaller than the scale x6: its downsampled input would have no pixel '
         '(in data-loader worker 0)'),
    Case('test.py', 'malformed --set value', lambda w: evaluate(w, w.test_config(), '--set',
                                                                'eval_bsize=['),
         "override 'eval_bsize=[': the value is not valid YAML"),
    Case('test.py', '--model given a YAML config', lambda w: evaluate(
        w, w.test_config(), '--model', w.test_config()), 'is a text file (a YAML config?), not a '
        'checkpoint'),
    Case('test.py', 'data_norm of 2 values', lambda w: evaluate(w, w.test_config(
        set_arg('data_norm.inp.sub', [0.5, 0.5]))),
        'data_norm.inp.sub must list 1 value (all channels) or 3 (R, G, B), got [0.5, 0.5]'),
    Case('test.py', 'split_file that is a JSON list', lambda w: evaluate(w, w.test_config(
        lambda c: (c['test_dataset']['dataset']['args'].update(
            split_file=w.json('split.json', ['a.png']), split_key='test')))),
        'must map split names to lists of file names'),
    Case('test.py', 'split_file naming a missing file', lambda w: evaluate(w, w.test_config(
        lambda c: (c['test_dataset']['dataset']['args'].update(
            split_file=w.json('split.json', {'test': ['ax4.png', 'nope.png']}),
            split_key='test')))), 'names 1 file(s) not in'),
    Case('test.py', 'checkpoint with NaN weights',
         lambda w: evaluate(w, w.test_config(), '--model', w.checkpoint(
             lambda c: c['model']['sd']['imnet.layers.0.bias'].fill_(float('inf')))),
         'holds NaN or infinite values'),
    # train_liif.py
    Case('train_liif.py', 'epoch_max: abc', lambda w: train(w, w.train_config(
        set_arg('epoch_max', 'abc'))), "epoch_max: expected an integer (>= 1), got 'abc'"),
    Case('train_liif.py', 'epoch_max: -3', lambda w: train(w, w.train_config(
        set_arg('epoch_max', -3))), 'epoch_max: expected an integer (>= 1), got -3'),
    Case('train_liif.py', 'epoch_max: 2.5', lambda w: train(w, w.train_config(
        set_arg('epoch_max', 2.5))), 'epoch_max: expected an integer (>= 1), got 2.5'),
    Case('train_liif.py', 'lr: fast', lambda w: train(w, w.train_config(
        set_arg('optimizer.args.lr', 'fast'))), "optimizer.args.lr: expected a number (> 0)"),
    Case('train_liif.py', 'milestone: (typo of milestones)', lambda w: train(w, w.train_config(
        lambda c: c['multi_step_lr'].update(milestone=c['multi_step_lr'].pop('milestones')))),
        'multi_step_lr.milestone: unknown key; allowed here: gamma, milestones'),
    Case('train_liif.py', 'typo in a model arg (n_resblock)', lambda w: train(w, w.train_config(
        lambda c: c['model']['args']['encoder_spec']['args'].update(n_resblock=2))),
        'model.args.encoder_spec.args.n_resblock: unknown key'),
    Case('train_liif.py', '--save-dir that is a file',
         lambda w: ['--config', w.train_config(), '--save-dir', w.text('save'),
                    '--device', 'cpu', '--quiet'], 'is a file, not a folder'),
    Case('train_liif.py', '--resume with a config that does not fit the checkpoint',
         lambda w: (w.trained_run(), train(w, w.train_config(
             set_arg('model.args.imnet_spec.args.hidden_list', [32]), name='train.yaml'),
             '--resume', '--set', 'epoch_max=2'))[1],
         "model.args.imnet_spec.args.hidden_list: [16] -> [32]"),
    Case('train_liif.py', '--resume from a checkpoint without optimizer state',
         lambda w: (w.trained_run(), _drop_optimizer(w.path('save/train/epoch-last.pth')),
                    train(w, w.path('train.yaml'), '--resume', '--set', 'epoch_max=2'))[2],
         'has no optimizer state'),
    Case('train_liif.py', '--compile graphs (CUDA graphs) on a CPU',
         lambda w: train(w, w.train_config(), '--compile', 'graphs'),
         "compile mode 'graphs' (CUDA graphs) needs a CUDA device"),
    Case('train_liif.py', '--precision fp16 on a CPU',
         lambda w: train(w, w.train_config(), '--precision', 'fp16'),
         'precision fp16 (with a gradient scaler) needs a CUDA device'),
    # scripts
    Case('scripts/make_lr.py', '--out that is a file',
         lambda w: ['--hr', w.folder_with_image('hr1'), '--out', w.image('o.png'), '--quiet'],
         'is a file, not a folder'),
    Case('scripts/download_pretrained.py', '--from a file with the wrong SHA-256',
         lambda w: ['--from', w.text('fake.pth'), '--out', w.path('p.pth')],
         'is not the official checkpoint: SHA-256'),
    Case('scripts/download_pretrained.py', '--from a missing file',
         lambda w: ['--from', w.path('none.pth'), '--out', w.path('p.pth')], 'no such file'),
    Case('scripts/download_pretrained.py', '--out a folder',
         lambda w: ['--out', w.path('')], 'is a folder; give the checkpoint\'s file path'),
    # round 3: resource bombs end in one line naming the file and the limit
    Case('test.py', 'HR image whose header declares 100000x100000',
         lambda w: evaluate(w, w.test_config(lambda c: w.png_header('hr/a.png', 100000, 100000))),
         'is 100000x100000: decoding it needs'),
    Case('scripts/make_lr.py', 'HR image whose header declares 100000x100000',
         lambda w: ['--hr', w.bomb_folder('hr1'), '--out', w.path('lr1'), '--quiet'],
         'is 100000x100000: decoding it needs'),
    Case('scripts/resize.py', 'image whose header declares 100000x100000',
         lambda w: ['--src', w.bomb_folder('src'), '--out', w.path('out'), '--quiet'],
         'is 100000x100000: decoding it needs'),
    Case('viewer.py', 'input whose header declares 100000x100000',
         lambda w: ['--input', w.png_header('big.png', 100000, 100000), '--model', w.tiny(),
                    '--device', 'cpu', '--port', '0'], 'is 100000x100000: decoding it needs'),
    Case('test.py', 'config holding a billion-laughs alias bomb',
         lambda w: evaluate(w, w.raw('bomb.yaml', ALIAS_BOMB)),
         'more than 100000 values once its aliases are expanded'),
    Case('train_liif.py', 'config nested 20,000 levels deep',
         lambda w: train(w, w.raw('deep.yaml', '[' * 20000 + ']' * 20000)),
         'nested deeper than 64 levels'),
    Case('test.py', '--set value holding an alias bomb',
         lambda w: evaluate(w, w.test_config(), '--set', 'eval_bsize=' + ALIAS_BOMB_FLOW),
         'more than 100 aliases'),
    Case('demo.py', "an alias bomb in the checkpoint's run config.yaml",
         lambda w: demo(w, '--model', w.run_checkpoint(ALIAS_BOMB)),
         'more than 100000 values once its aliases are expanded'),
    Case('demo.py', '--cmsr table nested 20,000 levels deep',
         lambda w: demo(w, '--cmsr', w.raw('t.yaml', '[' * 20000 + ']' * 20000)),
         'nested deeper than 64 levels'),
    Case('train_liif.py', 'n_resblocks: 1000000000', lambda w: train(w, w.train_config(
        set_arg('model.args.encoder_spec.args.n_resblocks', 10 ** 9))), 'build more than'),
    Case('train_liif.py', 'hidden_list: [1000000000]', lambda w: train(w, w.train_config(
        set_arg('model.args.imnet_spec.args.hidden_list', [10 ** 9]))), 'build more than'),
    Case('demo.py', '--scale 1e308', lambda w: demo(w, '--scale', '1e308'),
         'no format holds it: ask for a smaller'),
    Case('scripts/resize.py', '--sizes 100000',
         lambda w: ['--src', w.folder_with_image('src'), '--out', w.path('out'), '--sizes',
                    '100000', '--quiet'], 'resized to 100000x100000: that size needs'),
    # round 3: configs that could silently mean something else
    Case('test.py', 'eval_type given twice',
         lambda w: evaluate(w, w.appended(w.test_config(), 'eval_type: benchmark-2\n')),
         "the key 'eval_type' is given twice"),
    Case('train_liif.py', 'optimizer given twice',
         lambda w: train(w, w.appended(w.train_config(), 'optimizer: {name: sgd}\n')),
         "the key 'optimizer' is given twice"),
    Case('train_liif.py', 'epoch_val with no val_dataset',
         lambda w: train(w, w.train_config(set_arg('epoch_val', 1))),
         'epoch_val: 1 asks for validation, but the config has no val_dataset'),
    Case('train_liif.py', 'momentum for adam', lambda w: train(w, w.train_config(
        set_arg('optimizer.args.momentum', 0.9))),
        "optimizer.args.momentum: not an argument of adam; allowed"),
    Case('train_liif.py', 'betas for sgd', lambda w: train(w, w.train_config(
        set_arg('optimizer', {'name': 'sgd', 'args': {'lr': 0.1, 'betas': [0.9, 0.99]}}))),
        "optimizer.args.betas: not an argument of sgd; allowed"),
    Case('train_liif.py', 'betas: [0.9]', lambda w: train(w, w.train_config(
        set_arg('optimizer.args.betas', [0.9]))),
        'optimizer.args.betas: expected 2 numbers in [0, 1), got [0.9]'),
    Case('train_liif.py', 'three betas', lambda w: train(w, w.train_config(
        set_arg('optimizer.args.betas', [0.9, 0.99, 0.999]))),
        'optimizer.args.betas: expected 2 numbers in [0, 1), got [0.9, 0.99, 0.999]'),
    Case('train_liif.py', 'config in Latin-1',
         lambda w: train(w, w.raw('latin1.yaml', '# caf\u00e9\nepoch_max: 1\n', 'latin-1')),
         'latin1.yaml is not UTF-8 text'),
    Case('scripts/make_cmsr_table.py', 'a config with data_nrom',
         lambda w: ['--config', w.test_config(lambda c: c.update(data_nrom=c.pop('data_norm'))),
                    '--model', w.tiny(), '--out', w.path('s2m.yaml'), '--device', 'cpu',
                    '--quiet'], 'data_nrom: unknown key'),
    Case('scripts/make_cmsr_table.py', '--mse-threshold inf',
         lambda w: ['--config', w.test_config(), '--model', w.tiny(), '--out',
                    w.path('s2m.yaml'), '--mse-threshold', 'inf'],
         "argument --mse-threshold: must be a finite number > 0, got 'inf'"),
    Case('scripts/make_cmsr_table.py', 'a table holding a decode scale of 0.001',
         lambda w: ['--config', w.test_config(), '--model', w.tiny(), '--out',
                    w.raw('s2m.yaml', '4: {0.001: 0.1, 2: 0.2}\n'), '--device', 'cpu'],
         'decode scale 0.001 of scale 4 is below 1'),
    Case('demo.py', 'CMSR table whose thresholds decrease with the scale',
         lambda w: demo(w, '--cmsr', w.raw('t.yaml', '12: {1: 0.3, 2: 0.2, 4: 0.1}\n')),
         'the thresholds of scale 12 decrease'),
    # round 3: evaluation refuses what it cannot pair
    Case('test.py', 'paired names that only half match (ax4, cx4 vs a, b)',
         lambda w: evaluate(w, w.pairs(['ax4.png', 'cx4.png'], ['a.png', 'b.png'])),
         "'cx4.png' has no partner in"),
    Case('test.py', 'one LR file more than the HR files',
         lambda w: evaluate(w, w.pairs(['ax4.png', 'bx4.png'], ['a.png'])),
         "'bx4.png' has no partner in"),
    # round 3: resume refuses what it cannot honour
    Case('train_liif.py', '--resume with a changed data_norm',
         lambda w: (w.trained_run(), train(w, w.train_config(set_arg(
             'data_norm', {'inp': {'sub': [0.5], 'div': [0.5]},
                           'gt': {'sub': [0.5], 'div': [0.5]}}), name='train.yaml'),
             '--resume', '--set', 'epoch_max=2'))[1], 'data_norm'),
    Case('train_liif.py', '--resume with a changed model argument',
         lambda w: (w.trained_run(), train(w, w.train_config(set_arg(
             'model.args.local_ensemble', False), name='train.yaml'),
             '--resume', '--set', 'epoch_max=2'))[1], 'model.args.local_ensemble'),
    Case('train_liif.py', '--resume --seed 7',
         lambda w: (w.trained_run(), train(w, w.path('train.yaml'), '--resume', '--seed', '7',
                                           '--set', 'epoch_max=2'))[1],
         "--seed 7 with --resume: the run continues the checkpoint's random state"),
    # round 3: rendering
    Case('demo.py', '--max-memory 0.5', lambda w: demo(w, '--max-memory', '0.5'),
         "memory size must be at least 1 byte, got '0.5'"),
    Case('demo.py', 'TIFF that is garbage', lambda w: demo(
        w, '--input', w.raw('g.tif', 'II*\x00garbage' * 8, 'latin-1')), 'cannot read image'),
    Case('demo.py', 'float TIFF holding NaN', lambda w: demo(w, '--input', w.tiff(
        'nan.tif', np.full((8, 8, 3), np.nan, np.float32))), 'holds NaN'),
    Case('viewer.py', '--host 999.1.1.1',
         lambda w: ['--input', w.image(), '--model', w.tiny(), '--device', 'cpu', '--host',
                    '999.1.1.1', '--port', '0'], "--host '999.1.1.1'"),
    # round 3: scripts
    Case('scripts/make_lr.py', 'a.png and a.jpg in one HR folder',
         lambda w: ['--hr', w.folder_with_image('hr1', 'a.png', 'a.jpg'), '--out',
                    w.path('lr1'), '--quiet'], "'a.jpg' and 'a.png' would both write"),
    Case('scripts/resize.py', '--split-json a folder',
         lambda w: ['--src', w.folder_with_image('src'), '--out', w.path('out'), '--split-json',
                    w.path(''), '--quiet'], 'is a folder'),
    Case('scripts/resize.py', '--train-count -5',
         lambda w: ['--src', w.folder_with_image('src'), '--out', w.path('out'),
                    '--train-count', '-5'], "argument --train-count: must be an integer >= 0"),
    *[Case('scripts/bench_inference.py', f'{flag} {value}', lambda w, a=(flag, value): list(a),
           f"argument {shown}: must be {rule}, got '{value}'")
      for flag, shown, value, rule in [
          ('--size', '--size', '0', 'an integer >= 1'),
          ('--size', '--size', '-4', 'an integer >= 1'),
          ('--scales', '--scales', '0', 'a finite number > 0'),
          ('--scales', '--scales', 'nan', 'a finite number > 0'),
          ('--repeats', '--repeats', '0', 'an integer >= 1'),
          ('--chunk-size', '--chunk-size/--chunk', '0', 'an integer >= 1'),
          ('--threads', '--threads', '-1', 'an integer >= 1')]],
]


def _drop_optimizer(path: str) -> None:
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    del ckpt['optimizer']
    torch.save(ckpt, path)


def entry(script: str):
    if script == 'demo.py':
        import demo
        return demo.main
    if script == 'test.py':
        import test
        return test.main
    if script == 'train_liif.py':
        import train_liif
        return train_liif.main
    if script == 'viewer.py':
        import viewer
        return viewer.main
    import importlib
    return importlib.import_module(script[:-3].replace('/', '.')).main


def run(script: str, argv: List[str]) -> int:
    """The script's exit status for argv, in this process (argparse's exits included)."""
    try:
        return entry(script)(argv)
    except SystemExit as e:
        return e.code


def snapshot(root: str):
    """Every file and folder under root, files with their size, modification time and
    permissions (an empty folder a failed run made counts as a change)."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            out[os.path.relpath(os.path.join(folder, name), root) + os.sep] = 'folder'
        for name in files:
            info = os.stat(os.path.join(folder, name))
            out[os.path.relpath(os.path.join(folder, name), root)] = (
                info.st_size, info.st_mtime_ns, info.st_mode)
    return out


def test_there_are_at_least_30_cases():
    assert len(CASES) >= 30 and len({c.what + c.script for c in CASES}) == len(CASES)


@pytest.mark.parametrize('case', CASES, ids=[f'{c.script}: {c.what}' for c in CASES])
def test_bad_input_is_one_error_line_and_changes_no_file(tmp_path, capsys, monkeypatch, case):
    w = Workspace(tmp_path)
    argv = case.argv(w)
    monkeypatch.chdir(tmp_path)  # default outputs (demo's outputs/) would land here
    before = snapshot(str(tmp_path))
    capsys.readouterr()
    code = run(case.script, argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith('error: ') and err.count('\n') == 1, err
    assert case.message in err, err
    assert snapshot(str(tmp_path)) == before


def error_lines():
    """(case, the error line it gives) for every case, run in a temporary folder shown as T/."""
    import contextlib
    import io
    import logging
    import tempfile
    logging.disable(logging.CRITICAL)
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            argv = case.argv(Workspace(tmp))
            here = os.getcwd()
            os.chdir(tmp)
            err = io.StringIO()
            try:
                with contextlib.redirect_stderr(err), \
                        contextlib.redirect_stdout(io.StringIO()):
                    code = run(case.script, argv)
            finally:
                os.chdir(here)
            line = err.getvalue().strip().replace(tmp + os.sep, 'T/').replace(tmp, 'T')
            shared = os.path.join(os.path.dirname(os.path.abspath(REPO)), 'shared')
            yield case, f"{line.replace(shared, '../shared')} (exit {code})"


if __name__ == '__main__':
    print('| script | bad input | what it gives |')
    print('|---|---|---|')
    for c, line in error_lines():
        print(f'| `{c.script}` | {c.what} | `{line}` |')
