"""S same-architecture models as one set of stacked (S, ...) tensors: forward, losses, optimizers, prediction.

:mod:`distillguard.train.batched` trains such stacks so that each model gets exactly the
update ``loop.fit`` would give it; this module holds the stacked models themselves.

Two forward paths. MLPs (the audit's default) run as a chain of ``baddbmm`` + ReLU with
the backward that ``F.linear`` uses: per model slice these are the very GEMMs of the
loop. A GEMM library may still pick another kernel for a batched call than for a single
one (seen with odd or tiny matrix sizes); training can grow such 1e-7 differences, so
"equal" means within 1e-5 (measured: 0 on the benchmark's MLP shapes).
Any other architecture (the CNN) runs through ``vmap(functional_call)``, whose batched
kernels round differently too; models ``vmap`` cannot handle fall back to ``loop.fit``
(:func:`vmappable` tells which).
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from distillguard.models.classifiers import MLP, build_model
from distillguard.train.loop import LossFn, Recipe, make_optimizer

logger = logging.getLogger(__name__)

# Elements per SlicedAdamW slice: the optimizer's ~8 elementwise passes then run on a few MB
# that stay in cache, instead of streaming the whole stacked state from memory 8 times.
ADAMW_SLICE = 1 << 18
# FusedAdamW steps whole blocks of this many elements (a multiple of any SIMD width).
FUSED_BLOCK = 64
# Input elements (models × rows × features) per forward chunk when predicting.
PREDICT_ELEMENTS = 1 << 22

# What a model that ``vmap`` cannot handle raises (missing batching rule, data-dependent
# control flow, ``.item()``, in-place writes into unbatched tensors).
VMAP_ERRORS = (RuntimeError, NotImplementedError, TypeError, ValueError)

# An exact MLP plan: ("linear", weight name, bias name) or ("relu",) per layer.
_Layer = tuple[str, ...]


@contextmanager
def quiet_vmap_fallback() -> Iterator[None]:
    """Silence vmap's "performance drop" warning for ops without a batching rule.

    vmap then loops over models in C++, which still beats the Python loop; the warning is
    noise here (and an error under ``-W error``).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"There is a performance drop because we have not yet implemented")
        yield


def _mlp_plan(model: nn.Module) -> list[_Layer] | None:
    """The layers of an :class:`MLP` made only of biased Linear and ReLU layers, else None."""
    if type(model) is not MLP:
        return None
    plan: list[_Layer] = []
    for i, layer in enumerate(model.net):
        if type(layer) is nn.Linear and layer.bias is not None:
            plan.append(("linear", f"net.{i}.weight", f"net.{i}.bias"))
        elif type(layer) is nn.ReLU:
            plan.append(("relu",))
        else:
            return None
    return plan


class _StackedLinear(torch.autograd.Function):
    """S linear layers at once, computed as ``F.linear`` computes one.

    For 2-D inputs ``F.linear`` is ``addmm(b, x, Wᵀ)``, whose backward forms
    ``grad_x = g @ W``, ``grad_W = gᵀ @ x`` and ``grad_b = g.sum(0)``. The same products,
    batched over models, give the same numbers per model whenever the batched GEMM runs
    the single GEMM's kernel per slice. Autograd through ``baddbmm`` would instead form
    ``(xᵀ @ g)ᵀ`` (other rounding) and copy it into W's layout at every step.
    """

    @staticmethod
    def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """x: (S, B, i), weight: (S, o, i), bias: (S, o) -> (S, B, o)."""
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # noqa: ANN001 (autograd's signature)
        x, weight, _ = inputs
        ctx.save_for_backward(x, weight)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # noqa: ANN001
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        return (torch.bmm(grad, weight) if need_x else None,
                torch.bmm(grad.transpose(1, 2), x) if need_w else None,
                grad.sum(1) if need_b else None)


def _mlp_forward(plan: list[_Layer], params: dict[str, torch.Tensor], X: torch.Tensor) -> torch.Tensor:
    """(S, B, *in) -> (S, B, C) through S stacked MLPs (see :class:`_StackedLinear`)."""
    h = X.flatten(2)
    for layer in plan:
        if layer[0] == "relu":
            h = torch.relu(h)
        else:
            h = _StackedLinear.apply(h, params[layer[1]], params[layer[2]])
    return h


@dataclass
class Stack:
    """S same-architecture models as one set of stacked tensors.

    Attributes:
        base: the architecture on the meta device (no storage), for ``functional_call``.
        params: name -> (S, *shape) leaf tensors that require grad.
        buffers: name -> (S, *shape) tensors (none in the MLP and CNN).
        keys: state-dict names in ``base.state_dict()`` order.
        plan: the exact MLP path, or None for ``vmap(functional_call)``.
    """

    base: nn.Module
    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    keys: list[str]
    plan: list[_Layer] | None

    @property
    def size(self) -> int:
        return len(next(iter(self.params.values())))

    def forward(self, X: torch.Tensor, *, shared: bool = False) -> torch.Tensor:
        """(S, B, *in) per-model inputs, or (B, *in) shared by all models -> (S, B, C) logits."""
        if self.plan is not None:
            return _mlp_forward(self.plan, self.params, X.expand(self.size, *X.shape) if shared else X)

        def one(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            return functional_call(self.base, (p, b), (x,))

        return vmap(one, in_dims=(0, 0, None if shared else 0))(self.params, self.buffers, X)

    def state_dicts(self, tensors: dict[str, torch.Tensor] | None = None) -> list[dict[str, torch.Tensor]]:
        """Split stacked tensors (default: the current ones) into S independent state dicts."""
        stacked = {**self.params, **self.buffers, **(tensors or {})}
        return [{k: stacked[k][s].detach().clone() for k in self.keys} for s in range(self.size)]


def stack_models(models: Sequence[nn.Module]) -> Stack:
    params, buffers = stack_module_state(list(models))
    base = copy.deepcopy(models[0]).to("meta")
    return Stack(base, params, buffers, list(models[0].state_dict()), _mlp_plan(models[0]))


def stack_states(arch: dict, states: Sequence[dict[str, torch.Tensor]], device: torch.device) -> Stack:
    base = build_model(arch, seed=0).to("meta")
    names = {n for n, _ in base.named_parameters()}
    keys = list(base.state_dict())
    stacked = {k: torch.stack([st[k] for st in states]).to(device) for k in keys}
    return Stack(base, {k: v for k, v in stacked.items() if k in names},
                  {k: v for k, v in stacked.items() if k not in names}, keys, _mlp_plan(base))


class BestStates:
    """Per-model checkpoint selection with ``fit``'s rule, on stacked tensors.

    A model's state is replaced only when its score is strictly higher than its best so
    far (the earliest best epoch wins; NaN never wins). A model never selected keeps its
    last-epoch parameters, as ``fit`` does when ``best_state`` stays None.
    """

    def __init__(self, params: dict[str, torch.Tensor]) -> None:
        S = len(next(iter(params.values())))
        self.score = torch.full((S,), -float("inf"), dtype=torch.float64)
        self.chosen = torch.zeros(S, dtype=torch.bool)
        self.tensors = {k: v.detach().clone() for k, v in params.items()}

    def update(self, scores: torch.Tensor, params: dict[str, torch.Tensor]) -> None:
        """scores: (S,) float64 validation metric of the epoch just finished."""
        better = scores > self.score
        if not bool(better.any()):
            return
        self.score = torch.where(better, scores, self.score)
        self.chosen |= better
        for k, v in params.items():
            mask = better.to(v.device)
            self.tensors[k][mask] = v.detach()[mask]

    def final(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """name -> (S, ...) kept parameters: the best where one was chosen, else the last epoch."""
        out = {}
        for k, v in params.items():
            keep = self.chosen.to(v.device).view(-1, *([1] * (v.dim() - 1)))
            out[k] = torch.where(keep, self.tensors[k], v.detach())
        return out


def model_losses(loss_fn: LossFn, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(S, B, C) logits, (S, B, ...) targets -> (S,) each model's own mean loss.

    One ``loss_fn`` call per model, on exactly the tensors ``fit`` would pass: cheap next
    to the layers, and it keeps any Python loss (and its rounding) as is. ``unbind``
    backpropagates as a single stack, not S scatters.
    """
    return torch.stack([loss_fn(z, t) for z, t in zip(logits.unbind(0), targets.unbind(0))])


def loss_vmappable(loss_fn: LossFn, logits: torch.Tensor, targets: torch.Tensor) -> bool:
    """Whether ``vmap(loss_fn)`` runs forward and backward on these (S, B, ...) tensors with
    batching rules for every op.

    An op without a rule (``kl_div``, in the KD loss) makes vmap loop over the models
    itself, which measured slower than :func:`model_losses`' plain calls (the student
    workload of benchmarks/bench_shadows.py: 207 s against 125 s).
    """
    try:
        z = logits.detach()[:, :2].requires_grad_()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.autograd.grad(vmap(loss_fn)(z, targets[:, :2]).sum(), z)
    except VMAP_ERRORS as error:
        logger.info("loss cannot be vmapped (%s: %s); one loss call per model", type(error).__name__, error)
        return False
    return not any("performance drop" in str(w.message) for w in caught)


def summed_loss(loss_fn: LossFn, logits: torch.Tensor, targets: torch.Tensor, *, vmapped: bool) -> torch.Tensor:
    """The sum over models of each model's own mean loss: its gradient w.r.t. model s is model s's own.

    ``vmapped``: one ``vmap(loss_fn)`` call for all S models, whose batched kernels reduce
    each model's rows on their own (measured: the same logit gradients, to the bit, as one
    call per model, for cross-entropy and KD); else :func:`model_losses`' S calls, whose S
    small autograd graphs cost more than the layers on small models.
    """
    if vmapped:
        with quiet_vmap_fallback():  # e.g. kl_div: vmap loops over models in C++, still one call
            return vmap(loss_fn)(logits, targets).sum()
    return model_losses(loss_fn, logits, targets).sum()


@torch.no_grad()
def predict_stacked(stack: Stack, X: torch.Tensor, *, shared: bool) -> torch.Tensor:
    """Eval-mode logits of every model, in row chunks.

    Args:
        X: (S, n, *in) per-model inputs, or (n, *in) shared by all models when ``shared``.

    Returns:
        (S, n, C) logits.
    """
    stack.base.eval()
    row_elements = X[0].numel() if shared else X[0, 0].numel()
    chunk = max(1, PREDICT_ELEMENTS // (stack.size * max(row_elements, 1)))
    return torch.cat([stack.forward(part, shared=shared) for part in X.split(chunk, dim=0 if shared else 1)], dim=1)


def take(T: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``T[index]`` for an (S, b) index: (S, b, *T.shape[1:]).

    ``index_select`` on the flat index copies whole rows; advanced indexing with a 2-D
    index is several times slower, which shows for small models.
    """
    return T.index_select(0, index.reshape(-1)).view(*index.shape, *T.shape[1:])


def vmappable(stack: Stack, X: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor, loss_fn: LossFn) -> bool:
    """Whether the vmap path runs forward and backward, tried on two rows per model."""
    if stack.plan is not None:
        return True
    try:
        loss = model_losses(loss_fn, stack.forward(take(X, rows[:, :2])), take(targets, rows[:, :2])).sum()
        torch.autograd.grad(loss, list(stack.params.values()))
    except VMAP_ERRORS as error:
        logger.info("model cannot be vmapped (%s: %s); training one model at a time", type(error).__name__, error)
        return False
    return True


class SlicedAdamW:
    """``torch.optim.AdamW`` over flat, cache-sized slices of the stacked parameters.

    AdamW is elementwise, so running torch's own implementation on slices (views that
    share storage with the stacked parameters) makes the same update as on whole tensors,
    or on S separate models (to the last bit: each pass is one elementwise op); only the memory
    traffic changes.
    """

    def __init__(self, params: list[torch.Tensor], recipe: Recipe, *, size: int | None = None) -> None:
        self.params = params
        size = size or ADAMW_SLICE
        self.spans = [(i, a, min(a + size, p.numel())) for i, p in enumerate(params) for a in range(0, p.numel(), size)]
        # Slices of a detached view are leaves that share the parameters' storage.
        self.slices = [params[i].detach().view(-1)[a:b].requires_grad_() for i, a, b in self.spans]
        self.optimizer = make_optimizer(self.slices, recipe)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        grads = [p.grad.reshape(-1) if p.grad is not None else None for p in self.params]
        for piece, (i, a, b) in zip(self.slices, self.spans):
            piece.grad = grads[i][a:b] if grads[i] is not None else None
        self.optimizer.step()


class FusedAdamW:
    """torch's fused AdamW over the stacked tensors, every element through its SIMD path.

    One kernel reads and writes each element once. But it runs a tensor's last
    ``numel % vector width`` elements through scalar code, which rounds differently in the
    last bit, and which model owns those elements depends on how many models are stacked
    (a Ray chunk, a torchrun share). So each stacked tensor steps as a body of whole
    ``FUSED_BLOCK``-element blocks (a view) plus its few remaining elements copied into a
    zero-padded block (zeros stay zero under AdamW): every element takes the vector path,
    and a model's update does not depend on which models share its stack.
    ``foreach`` where the device has no fused kernel.
    """

    def __init__(self, params: list[torch.Tensor], recipe: Recipe) -> None:
        self.params = params
        self.flat = [p.detach().view(-1) for p in params]
        self.bodies = [flat.numel() - flat.numel() % FUSED_BLOCK for flat in self.flat]
        # Views of a detached tensor are leaves that share the parameters' storage.
        self.pieces = [flat[:body].requires_grad_() for flat, body in zip(self.flat, self.bodies) if body]
        self.tails = {i: torch.zeros(FUSED_BLOCK, device=flat.device, dtype=flat.dtype, requires_grad=True)
                      for i, (flat, body) in enumerate(zip(self.flat, self.bodies)) if body < flat.numel()}
        fused = params[0].device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.AdamW([*self.pieces, *self.tails.values()], lr=recipe.lr,
                                           weight_decay=recipe.weight_decay, fused=fused,
                                           foreach=None if fused else True)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        grads = [p.grad.reshape(-1) if p.grad is not None else None for p in self.params]
        pieces = iter(self.pieces)
        for i, body in enumerate(self.bodies):
            if body:
                next(pieces).grad = grads[i][:body] if grads[i] is not None else None
        with torch.no_grad():
            for i, tail in self.tails.items():
                rest = self.flat[i].numel() - self.bodies[i]
                tail[:rest].copy_(self.flat[i][self.bodies[i]:])
                tail.grad = None if grads[i] is None else torch.nn.functional.pad(grads[i][self.bodies[i]:],
                                                                                  (0, FUSED_BLOCK - rest))
        self.optimizer.step()
        with torch.no_grad():
            for i, tail in self.tails.items():
                self.flat[i][self.bodies[i]:].copy_(tail[:self.flat[i].numel() - self.bodies[i]])
