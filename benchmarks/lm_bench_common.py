"""Shared steps of the language-model benchmarks, built from the library modules directly.

Not a test and not part of the package: the two LM benchmarks (``bench_lm_transfer_leak.py``,
``bench_lm_softlabel_store.py``) import it from this folder. Every step is one library call
(corpus, tokenizer, teacher, label, distill, probe); this file only wires them and times them.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from distillguard.lm.blocks import TokenBlocks, encode_blocks, iter_token_blocks
from distillguard.lm.data import CanarySpec
from distillguard.lm.models import DEFAULT_MODEL_CONFIG, build_causal_lm, load_causal_lm, save_causal_lm
from distillguard.lm.pii_corpus import PiiCorpus, generate_pii_corpus
from distillguard.lm.probes import canary_exposure
from distillguard.lm.softlabel_reader import SoftLabelReader
from distillguard.lm.softlabels import write_soft_labels
from distillguard.lm.tokenizer import check_secrets_not_in_vocab, train_bpe_tokenizer
from distillguard.lm.train import distill_causal_lm, evaluate_lm_loss, train_causal_lm
from distillguard.seeding import derive_seed


def log(message: str) -> None:
    """Progress on stderr (the table goes to stdout), with a wall-clock stamp."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Recipe:
    """Sizes and training recipe shared by the benchmarks (CLI flags fill it)."""

    seed: int = 0
    members_bytes: int = 300_000
    transfer_bytes: int = 300_000
    vocab_size: int = 2048
    block_len: int = 128
    model: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_MODEL_CONFIG))
    teacher_epochs: int = 20
    teacher_lr: float = 3e-3
    student_epochs: int = 6
    student_lr: float = 3e-3
    batch_size: int = 16
    n_references: int = 2000
    transfer_in_domain: float = 0.0  # the benchmarks' tables were measured on general public-style text


@dataclass
class Teacher:
    """What the student side needs from the teacher side, and the teacher's own numbers."""

    corpus: PiiCorpus
    tokenizer: Any
    model: Any
    test_blocks: TokenBlocks
    seconds: float


def add_recipe_flags(parser: Any, defaults: Recipe) -> None:
    """The size flags both benchmarks take."""
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--members-bytes", type=int, default=defaults.members_bytes)
    parser.add_argument("--transfer-bytes", type=int, default=defaults.transfer_bytes)
    parser.add_argument("--vocab-size", type=int, default=defaults.vocab_size)
    parser.add_argument("--block-len", type=int, default=defaults.block_len)
    parser.add_argument("--layers", type=int, default=defaults.model["n_layer"])
    parser.add_argument("--width", type=int, default=defaults.model["n_embd"])
    parser.add_argument("--teacher-epochs", type=int, default=defaults.teacher_epochs)
    parser.add_argument("--student-epochs", type=int, default=defaults.student_epochs)
    parser.add_argument("--lr", type=float, default=defaults.teacher_lr)
    parser.add_argument("--references", type=int, default=defaults.n_references,
                        help="random fillings per canary for exposure (max exposure = log2(n+1) bits)")
    parser.add_argument("--transfer-in-domain", type=float, default=defaults.transfer_in_domain,
                        help="share of the transfer bytes that is in-domain public text (the tables of docs/results/lm-benchmarks.md: 0)")
    parser.add_argument("--teacher-cache", type=Path, default=None,
                        help="folder to save the teacher in and reuse it from (same recipe = same teacher)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 is fastest for these tiny models on a shared machine)")


def parse_args(parser: Any, quick: dict[str, Any]) -> tuple[Any, Recipe]:
    """Parse, let ``--quick`` replace the flags left at their defaults, set threads; (args, recipe)."""
    args = parser.parse_args()
    if args.quick:
        for key, value in quick.items():
            if parser.get_default(key) == getattr(args, key):
                setattr(args, key, value)
    set_threads(args.threads)
    return args, recipe_from_args(args)


def recipe_from_args(args: Any) -> Recipe:
    model = {**DEFAULT_MODEL_CONFIG, "n_layer": args.layers, "n_embd": args.width,
             "n_positions": max(args.block_len, 2)}
    return Recipe(seed=args.seed, members_bytes=args.members_bytes, transfer_bytes=args.transfer_bytes,
                  vocab_size=args.vocab_size, block_len=args.block_len, model=model,
                  teacher_epochs=args.teacher_epochs, teacher_lr=args.lr, student_epochs=args.student_epochs,
                  student_lr=args.lr, n_references=args.references, transfer_in_domain=args.transfer_in_domain)


def _teacher_key(recipe: Recipe) -> str:
    """A name for the teacher that changes with everything that shapes it (the cache key)."""
    facts = {k: v for k, v in asdict(recipe).items() if k not in ("student_epochs", "student_lr", "n_references")}
    return "teacher-" + hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:12]


def train_teacher(recipe: Recipe, *, cache: Path | None = None) -> Teacher:
    """The private side: corpus, public-only tokenizer (checked), teacher fitted on the members.

    With ``cache``, the teacher folder (Hugging Face layout) is saved there under a key of
    the recipe and loaded on the next run with the same recipe, so the two benchmarks can
    share one teacher; the corpus is regenerated (it is a pure function of the seed).
    """
    start = time.perf_counter()
    corpus = generate_pii_corpus(seed=recipe.seed, target_bytes=recipe.members_bytes,
                                 transfer_bytes=recipe.transfer_bytes, transfer_in_domain=recipe.transfer_in_domain)
    folder = cache / _teacher_key(recipe) if cache is not None else None
    if folder is not None and (folder / "config.json").is_file():
        model, tokenizer = load_causal_lm(folder)
        log(f"teacher loaded from {folder}")
    else:
        tokenizer = train_bpe_tokenizer(corpus.transfer, vocab_size=recipe.vocab_size)
        model = None
    check_secrets_not_in_vocab(tokenizer, corpus.canaries)
    test_blocks = encode_blocks(tokenizer, corpus.test, block_len=recipe.block_len)
    if model is None:
        members = encode_blocks(tokenizer, corpus.members, block_len=recipe.block_len)
        log(f"corpus: {len(corpus.members)} member docs ({members.n_tokens} tokens), "
            f"{len(corpus.transfer)} transfer docs, {test_blocks.n_tokens} test tokens, V={len(tokenizer)}")
        model = build_causal_lm(recipe.model, tokenizer=tokenizer, seed=derive_seed(recipe.seed, "teacher-init"))
        history = train_causal_lm(model, members, epochs=recipe.teacher_epochs, lr=recipe.teacher_lr,
                                  batch_size=recipe.batch_size, seed=derive_seed(recipe.seed, "teacher"),
                                  on_epoch=lambda e: log(f"teacher epoch {e + 1}/{recipe.teacher_epochs}"))
        log(f"teacher: loss {history[0]['loss']:.2f} -> {history[-1]['loss']:.2f}")
        if folder is not None:
            save_causal_lm(model, tokenizer, folder)
    seconds = time.perf_counter() - start
    log(f"teacher ready in {seconds:.0f} s")
    return Teacher(corpus, tokenizer, model, test_blocks, seconds)


def label(teacher: Teacher, texts: Iterable[str], *, folder: Path, k: int, block_len: int,
          **layout: int) -> dict[str, Any]:
    """The label stage's core over ``texts`` (streamed top-k shards at T=1); ``layout``: the
    store's ``schema_version`` / ``logprob_bits`` (the label stage's default when empty)."""
    blocks = iter_token_blocks(teacher.tokenizer, texts, block_len=block_len)
    return write_soft_labels(teacher.model, blocks, folder=folder, k=k, batch_size=16, **layout)


def distill(teacher: Teacher, folder: Path, *, recipe: Recipe, temperature: float, seed_name: str) -> Any:
    """A fresh student (the teacher's architecture and tokenizer) trained from the shards only."""
    student = build_causal_lm(recipe.model, tokenizer=teacher.tokenizer, seed=derive_seed(recipe.seed, "student-init"))
    distill_causal_lm(student, SoftLabelReader(folder), loss="forward_kl", temperature=temperature,
                      epochs=recipe.student_epochs, lr=recipe.student_lr, batch_size=recipe.batch_size,
                      seed=derive_seed(recipe.seed, "student", seed_name))
    return student


def perplexity(model: Any, blocks: TokenBlocks) -> float:
    return math.exp(evaluate_lm_loss(model, blocks))


def mean_exposure(model: Any, tokenizer: Any, canaries: Sequence[CanarySpec], *, n_references: int,
                  seed: int) -> float:
    """Mean rank exposure (bits) over ``canaries`` (Carlini et al. 2019), same references per canary."""
    values = [canary_exposure(model, tokenizer, prefix=c.prefix, secret=c.secret, alphabet=c.alphabet,
                              n_references=n_references, seed=derive_seed(seed, "exposure", c.prefix),
                              batch_size=128).exposure_bits for c in canaries]
    return sum(values) / len(values)


def canaries_at(corpus: PiiCorpus, repetitions: int) -> list[CanarySpec]:
    return [c for c in corpus.canaries if c.repetitions == repetitions]


def set_threads(threads: int) -> None:
    """Torch threads, and transformers' progress bars and length warnings off (blocks are
    cut to the context after tokenizing whole documents, as the label stage does)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(max(1, threads))


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
