"""One optimisation step of the LIIF objective: L1 between decoded and true RGB, both
normalised, then the optimizer's update.

`l1_objective` is the objective as the paper states it, in plain eager PyTorch. `TrainStep`
runs it as a training step with the speed-ups of `StepOptions`, each optional:
  * precision: the forward under bf16 or fp16 autocast (fp16 with a gradient scaler);
  * compile: the objective (forward and, through AOTAutograd, backward) under torch.compile
    for the first batch's shape (a recipe's batches all have it; another shape, such as an
    epoch's last partial batch, runs eagerly instead of compiling again); with cuda_graphs,
    mode 'reduce-overhead', which replays the compiled step as CUDA graphs (one launch
    instead of hundreds);
  * channels_last: the model's convolutions in NHWC layout (faster tensor-core kernels);
and it never reads the loss (a host-device synchronisation): the caller decides when.
Where compiling fails (no C++ compiler, no Triton, an unsupported operation) the step says
why once and continues eagerly, with the same values.
"""
import argparse
import logging
import time
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from models import IMPLS, check_impl
from utils.coords import flat_batch
from utils.devices import PRECISIONS, check_precision

logger = logging.getLogger(__name__)

COMPILE_CHOICES = ('auto', 'off', 'on', 'graphs')


@dataclass(frozen=True)
class StepOptions:
    """How a training step runs; the defaults are the plain fp32 eager step.

    impl: the decoder's query path: 'reference' (default: the official forward, so that a
        run takes the official trainer's exact steps) or 'fast' (the same gradients up to
        float rounding, which drifts over steps: a speed-up like the others).
    precision: 'fp32', 'bf16' or 'fp16' (autocast of the forward; fp16 adds a grad scaler).
    compile: torch.compile the objective.
    cuda_graphs: with compile on a CUDA device, replay it as CUDA graphs.
    channels_last: NHWC layout for the model's parameters and input images.
    """
    impl: str = 'reference'
    precision: str = 'fp32'
    compile: bool = False
    cuda_graphs: bool = False
    channels_last: bool = False

    def __post_init__(self):
        check_impl(self.impl)
        check_precision(self.precision)
        if self.cuda_graphs and not self.compile:
            raise ValueError("cuda_graphs needs compile (CUDA graphs are captured by "
                             "torch.compile's 'reduce-overhead' mode)")


TRAIN_IMPL = (('--impl',), dict(
    choices=IMPLS, default='reference',
    help="the decoder's query path in training and validation: reference (the official "
         "forward: the official trainer's exact steps) or fast (faster, the same gradients "
         "up to float rounding, which drifts over steps) (default: %(default)s)"))


def add_step_arguments(parser: argparse.ArgumentParser) -> None:
    """The speed-up flags of train_liif.py and scripts/bench_train.py (read them with
    step_options_from_args)."""
    parser.add_argument(*TRAIN_IMPL[0], **TRAIN_IMPL[1])
    parser.add_argument('--precision', choices=list(PRECISIONS), default=None,
                        help='autocast of the forward: fp32 (default), bf16, or fp16 with '
                             'gradient scaling (CUDA only)')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision: shorthand for --precision bf16')
    parser.add_argument('--compile', choices=COMPILE_CHOICES, default='auto',
                        help='torch.compile the training step: on, graphs (and replay it as '
                             'CUDA graphs), off, or auto: graphs on CUDA (on under torchrun), '
                             'off on the CPU (default: auto)')
    parser.add_argument('--channels-last', choices=['auto', 'on', 'off'], default='auto',
                        help='NHWC layout for the convolutions (default auto: on CUDA in '
                             'bf16/fp16)')
    parser.add_argument('--fused-optimizer', choices=['auto', 'on', 'off'], default='auto',
                        help="PyTorch's fused Adam/SGD (default auto: on CUDA)")


def step_options_from_args(args: argparse.Namespace, device: torch.device,
                           distributed: bool = False) -> Tuple[StepOptions, bool]:
    """(the step's options, whether the optimizer is fused) from add_step_arguments' flags and
    args.impl, 'auto' resolved for `device`; ValueError for what it cannot run."""
    if args.amp and args.precision not in (None, 'bf16'):
        raise ValueError(f"--amp is --precision bf16; it contradicts --precision "
                         f"{args.precision}")
    precision = 'bf16' if args.amp else args.precision or 'fp32'
    options = resolve_step_options(
        device, args.impl, precision, args.compile,
        None if args.channels_last == 'auto' else args.channels_last == 'on', distributed)
    fused = args.fused_optimizer == 'on' or (args.fused_optimizer == 'auto' and
                                              device.type == 'cuda')
    return options, fused


def resolve_step_options(device: torch.device, impl: str = 'reference', precision: str = 'fp32',
                         compile: str = 'auto', channels_last: Optional[bool] = None,
                         distributed: bool = False) -> StepOptions:
    """The step's options for a device, 'auto' and None resolved.

    compile: 'off', 'on' (torch.compile), 'graphs' (and CUDA graphs; CUDA only) or 'auto':
        'graphs' on a CUDA device ('on' under DistributedDataParallel, whose gradient
        all-reduce does not go into a captured graph), 'off' on the CPU (where, in float32,
        it measured no faster and costs ~20 s of compiling).
    channels_last: None: on for a CUDA device in bf16 or fp16 (tensor-core convolutions
        want NHWC), else off.
    """
    if compile not in COMPILE_CHOICES:
        raise ValueError(f"unknown compile mode '{compile}'; expected one of "
                         f"{', '.join(COMPILE_CHOICES)}")
    check_precision(precision)
    cuda = device.type == 'cuda'
    if compile == 'auto':
        compile = ('on' if distributed else 'graphs') if cuda else 'off'
    if channels_last is None:
        channels_last = cuda and precision != 'fp32'
    options = StepOptions(impl=impl, precision=precision, compile=compile != 'off',
                          cuda_graphs=compile == 'graphs', channels_last=channels_last)
    check_fits(options, device, distributed)
    return options


def check_fits(options: StepOptions, device: torch.device, distributed: bool = False) -> None:
    """ValueError naming the option if `options` cannot run on `device` (or under DDP)."""
    if options.cuda_graphs and device.type != 'cuda':
        raise ValueError(f"compile mode 'graphs' (CUDA graphs) needs a CUDA device, not "
                         f"{device}; use 'on' or 'off'")
    if options.cuda_graphs and distributed:
        raise ValueError("compile mode 'graphs' cannot run under DistributedDataParallel (a "
                         "CUDA graph does not capture its gradient all-reduce); use 'on'")
    if options.precision == 'fp16' and device.type != 'cuda':
        raise ValueError("precision fp16 (with a gradient scaler) needs a CUDA device; "
                         "use bf16 or fp32 on the CPU")


def l1_objective(model: nn.Module, inp: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor,
                 gt: torch.Tensor, norms: Sequence[torch.Tensor], impl: str = 'fast',
                 dtype: Optional[torch.dtype] = None, levels: Optional[torch.Tensor] = None
                 ) -> torch.Tensor:
    """The training loss: mean |model(normalised input) - normalised gt|.

    Args:
        inp: (B, 3, h, w) LR input in [0, 1].
        coord, cell: (B, Q, 2) queries (flat form).
        gt: (B, Q, 3) true RGB in [0, 1].
        norms: (inp_sub, inp_div, gt_sub, gt_div) of inference.normalisers.
        dtype: autocast dtype of the forward (None: float32).
        levels: (K, 2) sizes of a cascade's levels before the last, for CLIT's training
            batches (datasets.cascaded), handed to the model.

    Returns:
        () float32 loss.
    """
    inp_sub, inp_div, gt_sub, gt_div = norms
    with torch.autocast(inp.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        extra = {} if levels is None else {'levels': levels}
        pred = model((inp - inp_sub) / inp_div, coord, cell, impl=impl, **extra)
    return nn.functional.l1_loss(pred.float(), (gt - gt_sub) / gt_div)


class TrainStep:
    """`step(batch)` runs one optimisation step and returns the loss, detached, on the device.

    Batches of either sample form (flat queries, or the grids of the `-fast` wrappers) are
    decoded as flat queries: the same values, and for SRNO the same attention over them.

    Args:
        model: the model (or its DistributedDataParallel wrapper), on its device.
        optimizer: over the model's parameters.
        norms: (inp_sub, inp_div, gt_sub, gt_div) on the model's device.
        options: the speed-ups (default: none).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 norms: Sequence[torch.Tensor], options: StepOptions = StepOptions()):
        self.model, self.optimizer, self.norms, self.options = model, optimizer, norms, options
        self.dtype = PRECISIONS[options.precision]
        device = next(model.parameters()).device
        check_fits(options, device, isinstance(model, nn.parallel.DistributedDataParallel))
        self.scaler = torch.amp.GradScaler(device.type) if options.precision == 'fp16' else None
        if options.channels_last and not isinstance(model, nn.parallel.DistributedDataParallel):
            model.to(memory_format=torch.channels_last)  # (a DDP model: before wrapping it)
        self.compiled = None
        self.compiled_shape = None
        self.compile_seconds: Optional[float] = None
        if options.compile:
            mode = 'reduce-overhead' if options.cuda_graphs and device.type == 'cuda' else None
            self.compiled = torch.compile(l1_objective, mode=mode, dynamic=False)

    def __call__(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        batch, _ = flat_batch(batch)
        inp = batch['inp']
        if self.options.channels_last:
            inp = inp.contiguous(memory_format=torch.channels_last)
        args = (self.model, inp, batch['coord'], batch['cell'], batch['gt'], self.norms,
                self.options.impl, self.dtype, batch.get('levels'))
        self.optimizer.zero_grad(set_to_none=True)
        if self.options.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        shape = (inp.shape, batch['coord'].shape)
        if self.compiled is not None and self.compiled_shape is None:
            self.compiled_shape = shape
        # Compiled for the recipe's one batch shape; another (an epoch's last, partial batch)
        # runs eagerly rather than compiling again.
        loss = self._compiled_backward(args) \
            if self.compiled is not None and shape == self.compiled_shape else None
        if loss is None:
            loss = l1_objective(*args)
            self._backward(loss)
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return loss.detach()

    def _backward(self, loss: torch.Tensor) -> None:
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def _compiled_backward(self, args) -> Optional[torch.Tensor]:
        """The compiled objective's loss, its gradients accumulated; None (after a warning,
        the gradients cleared) where compiling fails, so the eager step takes over."""
        start = time.perf_counter()
        try:
            loss = self.compiled(*args)
            self._backward(loss)
        except torch.OutOfMemoryError:
            raise
        except Exception as e:  # torch raises many types from its compiler back ends
            first = str(e).strip().splitlines()[0] if str(e).strip() else ''
            logger.warning('torch.compile of the training step failed (%s: %s); training '
                           'continues without it', type(e).__name__, first[:300])
            self.compiled = None
            self.optimizer.zero_grad(set_to_none=True)
            return None
        if self.compile_seconds is None:
            self.compile_seconds = time.perf_counter() - start
            logger.info('training step compiled in %.1f s', self.compile_seconds)
        return loss
