"""A DP-SGD text generator (Abadi et al. 2016) with Opacus, and seeded sampling from it: pure, no run-folder I/O.

The unit of privacy is one member **document**: each document is one training example,
``[EOS] + its tokens + [EOS]`` cut to the model's context (the tokens past it are never
seen, and counted), so adding or removing a document changes one example. Every step
draws a Poisson batch (each document kept with probability q = batch_size / documents),
clips each document's gradient to ``max_grad_norm``, adds N(0, σ²·C²) to the sum and
lets AdamW take the noisy mean. σ is calibrated to the target ε
(:func:`~distillguard.privacy.dp_sgd.noise_multiplier_for_epsilon`), and the ε recorded is
computed again by a fresh accountant from the (σ, q, steps) Opacus accounted.

Per-sample gradients (Opacus ``grad_sample_mode="hooks"``): ``nn.Linear``, ``nn.Embedding``,
``nn.LayerNorm`` have Opacus samplers; transformers' ``Conv1D`` (GPT-2) and
``LlamaRMSNorm`` have none and take Opacus' functorch fallback; the tied input/output
embedding accumulates both uses. The forward passes ``position_ids`` with the batch
dimension: without them GPT-2's position embedding sees a batch of one and its
per-sample gradient is wrong. ``tests/lm/test_dp_generator.py`` checks every parameter's
per-sample gradient against one-document gradients for both families; any other
``model_type`` is refused.

Randomness is explicit (sampling, noise, dropout: each its own seeded stream), and
``secure_mode`` is off as in :mod:`distillguard.train.dp`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from distillguard.errors import ConfigError
from distillguard.lm.models import context_length
from distillguard.privacy.dp_sgd import dp_sgd_epsilon, noise_multiplier_for_epsilon
from distillguard.seeding import derive_seed

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

SUPPORTED_MODEL_TYPES = ("gpt2", "llama")
MECHANISM = "dp-lm"


@dataclass(frozen=True, kw_only=True)
class GeneratorSettings:
    """DP-SGD of the generator (``[transfer.synthetic]`` with ``mechanism = "dp-lm"``)."""

    epsilon: float
    delta: float
    epochs: int
    batch_size: int
    lr: float
    max_grad_norm: float
    accountant: str = "prv"

    @classmethod
    def from_config(cls, cfg: Any, *, delta: float) -> GeneratorSettings:
        return cls(epsilon=cfg.epsilon, delta=delta, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                   max_grad_norm=cfg.max_grad_norm, accountant=cfg.accountant)


@dataclass(frozen=True)
class DocumentExamples:
    """Member documents as training examples: ``ids`` (n, L) int64, ``lengths`` (n,), ``truncated`` documents."""

    ids: torch.Tensor
    lengths: torch.Tensor
    truncated: int

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def check_generator_supported(model: PreTrainedModel) -> None:
    """Refuse a model whose per-sample gradients are not checked here (one line, naming the type)."""
    from opacus.grad_sample import GradSampleModule

    kind = getattr(model.config, "model_type", type(model).__name__)
    if kind not in SUPPORTED_MODEL_TYPES:
        raise ConfigError(f"[transfer.synthetic] dp-lm: the generator is a {kind!r} model; DP-SGD per-sample "
                          f"gradients are checked for {list(SUPPORTED_MODEL_TYPES)} only (build the teacher from "
                          "[teacher.arch] or give a GPT-2 / Llama [teacher] path)")
    errors = GradSampleModule.validate(model, strict=False)
    if errors:
        raise ConfigError(f"[transfer.synthetic] dp-lm: Opacus cannot train this {kind} model: "
                          + "; ".join(dict.fromkeys(str(e).strip() for e in errors)))


def document_examples(tokenizer: PreTrainedTokenizerBase, texts: list[str], *, context: int) -> DocumentExamples:
    """One example per document: ``[EOS] + tokens + [EOS]``, cut to ``context`` tokens, right-padded."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos_token; train it with train_bpe_tokenizer or set eos_token")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    encoded = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]  # longer ones: cut below
    rows = [[eos, *ids, eos] for ids in encoded]
    ids = torch.full((len(rows), context), pad, dtype=torch.int64)
    lengths = torch.tensor([min(len(r), context) for r in rows], dtype=torch.int64)
    for i, row in enumerate(rows):
        ids[i, : lengths[i]] = torch.tensor(row[:context], dtype=torch.int64)
    return DocumentExamples(ids, lengths, truncated=sum(len(r) > context for r in rows))


def per_document_loss(model: torch.nn.Module, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B,) mean next-token CE of each document over its real positions."""
    batch, width = ids.shape
    positions = torch.arange(width).expand(batch, width)  # with the batch dimension: Opacus needs it
    mask = torch.arange(width)[None, :] < lengths[:, None]  # (B, L)
    logits = model(input_ids=ids, attention_mask=mask.long(), position_ids=positions).logits[:, :-1]  # (B, L-1, V)
    valid = mask[:, 1:].to(logits.dtype)  # (B, L-1): targets that are real tokens
    per_token = F.cross_entropy(logits.transpose(1, 2).float(), ids[:, 1:], reduction="none") * valid
    return per_token.sum(1) / valid.sum(1).clamp_min(1.0)


def train_dp_generator(model: PreTrainedModel, examples: DocumentExamples, settings: GeneratorSettings, *, seed: int,
                       on_epoch: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train ``model`` in place with DP-SGD on ``examples``; returns its privacy record and log.

    Raises:
        ConfigError: an unsupported model, or an ε no σ reaches in ``epochs`` epochs.
    """
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    check_generator_supported(model)
    model.train()
    sampling = torch.Generator().manual_seed(derive_seed(seed, "generator", "dp", "sampling"))
    noise = torch.Generator().manual_seed(derive_seed(seed, "generator", "dp", "noise"))
    loader = DataLoader(TensorDataset(examples.ids, examples.lengths), batch_size=settings.batch_size,
                        generator=sampling)
    sigma = noise_multiplier_for_epsilon(target_epsilon=settings.epsilon, delta=settings.delta,
                                         sample_rate=1 / len(loader), epochs=settings.epochs,
                                         accountant=settings.accountant)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG turned off.*")
        engine = PrivacyEngine(accountant=settings.accountant, secure_mode=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.0)
    private, optimizer, loader = engine.make_private(
        module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=sigma,
        max_grad_norm=settings.max_grad_norm, poisson_sampling=True, noise_generator=noise, grad_sample_mode="hooks")
    log, steps = [], 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "generator", "dropout"))
        for epoch in range(settings.epochs):
            total, count, epoch_steps = _dp_epoch(private, optimizer, loader)
            steps += epoch_steps
            log.append({"epoch": epoch + 1, "train_loss": total / max(count, 1), "steps": steps})
            if on_epoch is not None:
                on_epoch(epoch + 1)
    private.to_standard_module()  # Opacus' hooks and per-sample attributes removed: a plain model again
    model.eval()
    (noise_multiplier, sample_rate, accounted), = engine.accountant.history
    if accounted != steps:
        raise RuntimeError(f"Opacus accounted {accounted} steps but the generator took {steps}")
    epsilon = dp_sgd_epsilon(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps,
                             delta=settings.delta, accountant=settings.accountant)
    return {"mechanism": MECHANISM, "epsilon": epsilon, "delta": settings.delta, "target_epsilon": settings.epsilon,
            "noise_multiplier": float(noise_multiplier), "sample_rate": float(sample_rate), "steps": int(steps),
            "epochs": settings.epochs, "batch_size": settings.batch_size, "max_grad_norm": settings.max_grad_norm,
            "accountant": settings.accountant, "unit": "member document", "fitted_on": len(examples),
            "truncated_documents": examples.truncated, "context": int(examples.ids.shape[1]),
            "model_type": str(model.config.model_type), "log": log}


def _dp_epoch(private: torch.nn.Module, optimizer, loader) -> tuple[float, int, int]:
    """One pass of Poisson batches: (sum of per-document losses, documents, steps). An empty batch still steps
    (noise alone), as the accountant assumes."""
    total, count, steps = 0.0, 0, 0
    for ids, lengths in loader:  # (B, L), (B,); B varies under Poisson sampling and may be 0
        optimizer.zero_grad(set_to_none=True)
        if len(ids):
            losses = per_document_loss(private, ids, lengths)
            with warnings.catch_warnings():  # Opacus' backward hooks fire on outputs: token ids need no grad
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                losses.mean().backward()
            total, count = total + float(losses.detach().sum()), count + len(ids)
        else:
            for p in optimizer.params:
                p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype)
        optimizer.step()
        steps += 1
    optimizer.zero_grad(set_to_none=True)
    return total, count, steps


def sample_documents(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, n: int, *, max_tokens: int | None,
                     seed: int, batch_size: int = 64) -> list[str]:
    """``n`` documents sampled from ``model`` after ``[EOS]`` (full distribution, temperature 1), cut at EOS.

    Sampling is post-processing of a DP model: it spends no budget. Seeded through
    ``fork_rng``, so the caller's random state is untouched.
    """
    eos = tokenizer.eos_token_id
    new = min(max_tokens or context_length(model), context_length(model) - 1)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    out: list[str] = []
    model.eval()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for start in range(0, n, batch_size):
            rows = min(batch_size, n - start)
            prompt = torch.full((rows, 1), eos, dtype=torch.int64, device=model.device)
            generated = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True, top_k=0,
                                       top_p=1.0, temperature=1.0, max_new_tokens=new, pad_token_id=pad,
                                       eos_token_id=eos)[:, 1:].tolist()
            for ids in generated:
                ids = ids[: ids.index(eos)] if eos in ids else ids
                out.append(tokenizer.decode(ids, skip_special_tokens=True))
    return out

