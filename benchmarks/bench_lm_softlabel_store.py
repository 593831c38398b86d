"""The soft-label store: bytes per token for top-k vs the full vocabulary, re-tempering error,
and the test perplexity of a student distilled at each k.

Usage: python benchmarks/bench_lm_softlabel_store.py [--quick] [--ks 8,32,128]
           [--temperature 1] [--full-blocks 64] [--no-full-student] [--teacher-cache DIR]
           [--members-bytes 300000] [--transfer-bytes 300000] [--teacher-epochs 20]
           [--student-epochs 8] [--json results.json]

One teacher (as in ``bench_lm_transfer_leak.py``; pass the same ``--teacher-cache`` to reuse
it) labels the built-in transfer text with the label stage's shard writer
(:func:`distillguard.lm.softlabels.write_soft_labels` in its first layout, ``schema_version``
1: float16 log-probabilities, int32 ids, float32 leftover, zstd Parquet, as the published
table was measured; ``bench_lm_softlabel_encoding.py`` compares it with the compact default
layout) at each k, and a student of the same architecture is
distilled from each set of shards (forward KL at ``--temperature``). Columns:

- bytes per token position on disk (all columns, shards only);
- the mean leftover mass ``1 − Σ_topk p`` at T=1;
- the **re-tempering error** at T=2 (the approximation documented in
  :mod:`distillguard.lm.losses`: the leftover is spread uniformly over the V−k tail tokens
  before tempering): the tempered tail mass the loss assumes vs the true one, the KL from
  the true tempered bucket distribution to the assumed one, and the relative error of
  the sparse loss against the dense loss for that k's student at T=1 (where only the
  coarse-graining of the tail into one bucket is lost) and at T=2 (coarse-graining and
  re-tempering), all on the first ``--full-blocks`` transfer blocks;
- the student's test perplexity (held-out text of the private distribution).

Full-vocabulary rows: the same shard writer at k=V, and a dense float16 table (every
log-probability, no ids, one list per block, zstd), both measured on the first
``--full-blocks`` blocks (the size per token does not depend on how many); the k=V student
(``--no-full-student`` to skip it) is distilled from k=V shards of the whole transfer text,
the exact-distillation reference. A student trained with plain cross-entropy on the
transfer text, without the teacher, is the floor. Seeded; times on a shared machine are
inflated.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from itertools import islice
from pathlib import Path
from typing import Any

import torch

from lm_bench_common import (
    Recipe,
    Teacher,
    add_recipe_flags,
    distill,
    label,
    log,
    markdown_table,
    perplexity,
    parse_args,
    train_teacher,
)
from results_page import add_docs_flag, publish

from distillguard.lm.blocks import encode_blocks, iter_token_blocks, pad_blocks
from distillguard.lm.losses import dense_kd_loss, sparse_from_logits, sparse_kd_loss, tempered_teacher_buckets
from distillguard.lm.models import build_causal_lm
from distillguard.lm.softlabel_reader import bytes_per_token
from distillguard.lm.softlabels import write_soft_labels
from distillguard.lm.train import train_causal_lm
from distillguard.seeding import derive_seed

QUICK = {"members_bytes": 30_000, "transfer_bytes": 30_000, "vocab_size": 512, "block_len": 64,
         "teacher_epochs": 10, "student_epochs": 3, "full_blocks": 16}
RETEMPER_T = 2.0
FIRST_LAYOUT = {"schema_version": 1, "logprob_bits": 16}  # the layout the published table was measured with


def dense_float16_bytes_per_token(teacher: Any, blocks: list[list[int]], folder: Path) -> float:
    """The full-vocabulary baseline: every log-probability as float16, no ids, same codec."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    with torch.no_grad():
        rows = [torch.log_softmax(teacher(torch.tensor([b])).logits[0], -1).half().numpy() for b in blocks]  # (n, V)
    column = pa.array([r.reshape(-1) for r in rows], pa.list_(pa.float16()))
    pq.write_table(pa.table({"logprobs": column}), folder / "dense.parquet", compression="zstd")
    return (folder / "dense.parquet").stat().st_size / sum(map(len, blocks))


@torch.no_grad()
def retempering_error(teacher: Any, student: Any, blocks: list[list[int]], *, k: int,
                      temperature: float = RETEMPER_T) -> dict[str, float]:
    """How far the loss's tempered teacher target (top-k + uniformly spread tail) is from the truth.

    Returns means over positions: ``tail_true`` and ``tail_assumed`` (tempered tail mass),
    ``kl_target`` = KL(true tempered buckets ‖ assumed buckets) in nats, ``leftover`` (tail
    mass at T=1), ``loss_rel_error`` = |sparse − dense| / dense of the T-tempered forward
    KD loss for ``student`` and ``loss_rel_error_t1`` the same at T=1, where tempering is
    exact and only the coarse-graining of the tail into one bucket is lost.
    """
    longest = max(map(len, blocks))
    padded = pad_blocks(blocks, block_len=longest, pad_id=0)
    mask = padded.mask
    teacher_logits = teacher(input_ids=padded.ids, attention_mask=mask.long()).logits.float()  # (B, L, V)
    student_logits = student(input_ids=padded.ids, attention_mask=mask.long()).logits.float()  # (B, L, V)
    vocab = teacher_logits.shape[-1]
    ids, logprobs, leftover = sparse_from_logits(teacher_logits, k=k)  # (B, L, k), (B, L, k), (B, L)
    sparse = float(sparse_kd_loss(student_logits, ids, logprobs, leftover, mask=mask, temperature=temperature))
    dense = float(dense_kd_loss(student_logits, teacher_logits, mask=mask, temperature=temperature))
    sparse_1 = float(sparse_kd_loss(student_logits, ids, logprobs, leftover, mask=mask))
    dense_1 = float(dense_kd_loss(student_logits, teacher_logits, mask=mask))
    coarse = {"loss_rel_error": abs(sparse - dense) / dense, "loss_rel_error_t1": abs(sparse_1 - dense_1) / dense_1}
    if k >= vocab:  # nothing truncated: tempering is exact
        return {"tail_true": 0.0, "tail_assumed": 0.0, "kl_target": 0.0, "leftover": 0.0, **coarse}
    assumed = tempered_teacher_buckets(logprobs, leftover, temperature=temperature, vocab_size=vocab)  # (B, L, k+1)
    tempered = torch.log_softmax(teacher_logits / temperature, dim=-1)  # (B, L, V)
    head = tempered.gather(-1, ids)  # (B, L, k)
    tail = tempered.scatter(-1, ids, float("-inf")).logsumexp(-1)  # (B, L)
    true = torch.cat([head, tail.unsqueeze(-1)], dim=-1)  # (B, L, k+1)
    m = mask.float()

    def mean(x: torch.Tensor) -> float:
        return float((x * m).sum() / m.sum())

    kl = (true.exp() * (true - assumed)).sum(-1)  # (B, L)
    return {"tail_true": mean(tail.exp()), "tail_assumed": mean(assumed[..., -1].exp()), "kl_target": mean(kl),
            "leftover": mean(leftover.exp()), **coarse}


def text_only_student(teacher: Teacher, recipe: Recipe) -> Any:
    """The floor: the student architecture trained with cross-entropy on the transfer text alone."""
    blocks = encode_blocks(teacher.tokenizer, teacher.corpus.transfer, block_len=recipe.block_len)
    model = build_causal_lm(recipe.model, tokenizer=teacher.tokenizer, seed=derive_seed(recipe.seed, "student-init"))
    train_causal_lm(model, blocks, epochs=recipe.student_epochs, lr=recipe.student_lr, batch_size=recipe.batch_size,
                    seed=derive_seed(recipe.seed, "student", "text-only"))
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_recipe_flags(parser, Recipe(student_epochs=8))
    parser.add_argument("--quick", action="store_true", help="small corpus and models: a smoke run of ~1 minute")
    parser.add_argument("--ks", default="8,32,128", help="comma-separated top-k values")
    parser.add_argument("--temperature", type=float, default=1.0, help="distillation temperature of the students")
    parser.add_argument("--full-blocks", type=int, default=64,
                        help="transfer blocks for the full-vocabulary sizes and the re-tempering error")
    parser.add_argument("--no-full-student", action="store_true", help="skip the k=V student")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    add_docs_flag(parser)
    args, recipe = parse_args(parser, QUICK)
    ks = sorted({min(int(k), recipe.vocab_size) for k in args.ks.split(",")})
    start = time.perf_counter()
    teacher = train_teacher(recipe, cache=args.teacher_cache)
    vocab = len(teacher.tokenizer)
    sample = list(islice(iter_token_blocks(teacher.tokenizer, teacher.corpus.transfer, block_len=recipe.block_len),
                         args.full_blocks))
    rows: list[dict[str, Any]] = [{"labels": "teacher (trained on the members)", "k": "-", "bytes": None,
                                   "test_perplexity": perplexity(teacher.model, teacher.test_blocks)}]
    with tempfile.TemporaryDirectory(prefix="bench-lm-store-") as scratch:
        root = Path(scratch)
        for k in ks + ([vocab] if not args.no_full_student and vocab not in ks else []):
            tick = time.perf_counter()
            meta = label(teacher, teacher.corpus.transfer, folder=root / f"k{k}", k=k, block_len=recipe.block_len,
                         **FIRST_LAYOUT)
            size = bytes_per_token(root / f"k{k}")
            student = distill(teacher, root / f"k{k}", recipe=recipe, temperature=args.temperature,
                              seed_name=f"store-{k}")
            error = retempering_error(teacher.model, student, sample, k=k)
            rows.append({"labels": "top-k shards" if k < vocab else "full-vocabulary shards (k = V)", "k": k,
                         "bytes": size, "test_perplexity": perplexity(student, teacher.test_blocks),
                         "tokens": meta["n_tokens"], "shard_mb": size * meta["n_tokens"] / 1e6, **error})
            log(f"k={k}: {size:.1f} B/token, student ppl {rows[-1]['test_perplexity']:.2f}, "
                f"re-tempering {error} ({time.perf_counter() - tick:.0f} s)")
            for name in list((root / f"k{k}").glob("*.parquet")):
                name.unlink()  # the k=V shards are large; keep the scratch disk small
        write_soft_labels(teacher.model, sample, folder=root / "full-sample", k=vocab, batch_size=16, **FIRST_LAYOUT)
        full_sample = bytes_per_token(root / "full-sample")
        dense = dense_float16_bytes_per_token(teacher.model, sample, root / "dense")
    rows.append({"labels": f"full-vocabulary shards (k = V), first {len(sample)} blocks", "k": vocab,
                 "bytes": full_sample, "test_perplexity": None})
    rows.append({"labels": f"dense float16 table, first {len(sample)} blocks", "k": vocab, "bytes": dense,
                 "test_perplexity": None})
    tick = time.perf_counter()
    floor = text_only_student(teacher, recipe)
    rows.append({"labels": "no teacher: CE on the transfer text", "k": "-", "bytes": None,
                 "test_perplexity": perplexity(floor, teacher.test_blocks)})
    log(f"text-only student: ppl {rows[-1]['test_perplexity']:.2f} ({time.perf_counter() - tick:.0f} s)")

    def fmt(value: Any, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    header = ["labels", "k", "bytes / token", "leftover mass (T=1)", f"tail mass at T={RETEMPER_T:g}: true → assumed",
              f"KL(true ‖ assumed) at T={RETEMPER_T:g} (nats)", "sparse vs dense loss at T=1", f"… at T={RETEMPER_T:g}",
              "student test perplexity"]
    table = [[r["labels"], r["k"], fmt(r["bytes"], ".0f"), fmt(r.get("leftover"), ".2f"),
              f"{r['tail_true']:.2f} → {r['tail_assumed']:.2f}" if "tail_true" in r else "-",
              fmt(r.get("kl_target"), ".3f"), fmt(r.get("loss_rel_error_t1"), ".0%"), fmt(r.get("loss_rel_error"), ".0%"),
              fmt(r["test_perplexity"], ".1f")] for r in rows]
    print(markdown_table(header, table))
    if not args.quick:  # a smoke run's numbers do not belong on the page
        publish(args, "lm-benchmarks.md", "lm-softlabel-store", markdown_table(header, table))
    print(f"\nV={vocab}, transfer {rows[1].get('tokens')} tokens, model {recipe.model['n_layer']}x"
          f"{recipe.model['n_embd']}, students {recipe.student_epochs} epochs at T={args.temperature:g}, "
          f"seed {recipe.seed}; total {time.perf_counter() - start:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2, default=str) + "\n")
    assert all(math.isfinite(r["bytes"]) for r in rows if r["bytes"] is not None)


if __name__ == "__main__":
    main()
