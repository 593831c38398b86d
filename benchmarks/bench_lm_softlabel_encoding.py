"""The soft-label store's encoding at k = 128: bytes per token, log-probability error, and the
test perplexity of a student distilled from each store, against the first layout.

Usage: python benchmarks/bench_lm_softlabel_encoding.py [--quick] [--k 128] [--bits 16,6,5,4,3] [--seeds 2]
           [--teacher-cache DIR] [--members-bytes 300000] [--transfer-bytes 300000]
           [--teacher-epochs 20] [--student-epochs 6] [--json results.json] [--no-docs]

One teacher (the workload of ``bench_lm_softlabel_store.py``: pass the same
``--teacher-cache`` to reuse it) labels the built-in transfer text at k = 128 into one store
per encoding (:func:`distillguard.lm.softlabels.write_soft_labels`):

- schema 1, float16: the first layout (int32 ids in rank order, float16 log-probabilities,
  float32 leftover, zstd), the reference;
- schema 2 at each ``--bits``: uint16 sorted, delta-coded ids, log-probabilities as float16
  (16) or quantized per position on a log scale (2-8 bits), float32 leftover, zstd level 9.

Columns: bytes per token position on disk (shards only); the largest and mean absolute error
of the log-probabilities the reader returns (renormalised) against the teacher's float32
values (a schema-2 float32 store), over every stored entry; the mean KL divergence from the
true k + 1 buckets (top-k + tail) to the stored ones, per position (nats); the test
perplexity of ``--seeds`` students distilled from each store (forward KL, T = 1, the same
initialisation for all, data orders 1..N, the same N orders for every store) and the
change of their mean against the first layout's students. Seeded; times on a shared
machine are inflated.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from lm_bench_common import Recipe, add_recipe_flags, distill, label, log, markdown_table, parse_args, perplexity
from lm_bench_common import train_teacher
from results_page import add_docs_flag, publish

from distillguard.lm.blocks import iter_token_blocks
from distillguard.lm.losses import tempered_teacher_buckets
from distillguard.lm.softlabel_reader import SoftLabelReader, bytes_per_token
from distillguard.lm.softlabels import write_soft_labels

QUICK = {"members_bytes": 30_000, "transfer_bytes": 30_000, "vocab_size": 512, "block_len": 64,
         "teacher_epochs": 10, "student_epochs": 2}


def _sorted_entries(folder: Path):
    """Per reader batch (file order): ids sorted per position, their log-probs, the leftover; real positions only."""
    reader = SoftLabelReader(folder)
    for batch in reader.batches(batch_size=16):
        ids, order = batch.topk_ids[batch.mask].sort(dim=-1)  # (N, k)
        yield ids, batch.topk_logprobs[batch.mask].gather(-1, order), batch.leftover[batch.mask], reader.vocab_size


def label_errors(folder: Path, truth: Path) -> dict[str, float]:
    """Max / mean |log p error| over every stored entry and mean KL(true buckets ‖ stored buckets) per position."""
    worst, total, kl, entries, positions = 0.0, 0.0, 0.0, 0, 0
    for (ids, logprobs, leftover, vocab), (true_ids, true_logprobs, true_leftover, _) in zip(
            _sorted_entries(folder), _sorted_entries(truth), strict=True):
        if not torch.equal(ids, true_ids):
            raise AssertionError(f"{folder}: the stored top-k ids differ from the teacher's")
        error = (logprobs - true_logprobs).abs()  # (N, k)
        worst, total, entries = max(worst, float(error.max())), total + float(error.sum()), entries + error.numel()
        stored = tempered_teacher_buckets(logprobs, leftover, temperature=1.0, vocab_size=vocab)  # (N, k+1)
        true = tempered_teacher_buckets(true_logprobs, true_leftover, temperature=1.0, vocab_size=vocab)
        p = true.exp()
        kl += float(torch.where(p > 0, p * (true - stored), torch.zeros_like(p)).sum())
        positions += len(ids)
    return {"max_error": worst, "mean_error": total / entries, "kl": kl / positions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_recipe_flags(parser, Recipe())
    parser.add_argument("--quick", action="store_true", help="small corpus and models: a smoke run of ~1 minute")
    parser.add_argument("--k", type=int, default=128, help="top-k per position")
    parser.add_argument("--bits", default="16,6,5,4,3", help="schema-2 logprob_bits to measure (16 = float16)")
    parser.add_argument("--seeds", type=int, default=2,
                        help="students per store, with data-order seeds 1..N (the seed-to-seed spread)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    add_docs_flag(parser)
    args, recipe = parse_args(parser, QUICK)
    start = time.perf_counter()
    teacher = train_teacher(recipe, cache=args.teacher_cache)
    k = min(args.k, len(teacher.tokenizer))
    stores = [("schema 1 (first layout), float16", {"schema_version": 1, "logprob_bits": 16})]
    stores += [(f"schema 2, {'float16' if b == 16 else f'{b}-bit'}", {"schema_version": 2, "logprob_bits": b})
               for b in map(int, args.bits.split(","))]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-lm-encoding-") as scratch:
        root = Path(scratch)
        blocks = list(iter_token_blocks(teacher.tokenizer, teacher.corpus.transfer, block_len=recipe.block_len))
        write_soft_labels(teacher.model, blocks, folder=root / "truth", k=k, batch_size=16, logprob_bits=32)
        for index, (name, layout) in enumerate(stores):
            tick = time.perf_counter()
            folder = root / f"store-{index}"
            meta = write_soft_labels(teacher.model, blocks, folder=folder, k=k, batch_size=16, **layout)
            labelled = time.perf_counter() - tick
            ppl = [perplexity(distill(teacher, folder, recipe=recipe, temperature=1.0,
                                      seed_name="encoding" if seed == 1 else f"encoding-{seed}"), teacher.test_blocks)
                   for seed in range(1, args.seeds + 1)]
            rows.append({"store": name, **layout, "bytes": bytes_per_token(folder), "tokens": meta["n_tokens"],
                         "label_seconds": labelled, **label_errors(folder, root / "truth"),
                         "test_perplexity": ppl, "mean_perplexity": sum(ppl) / len(ppl)})
            log(f"{name}: {rows[-1]['bytes']:.1f} B/token, max error {rows[-1]['max_error']:.3f}, "
                f"ppl {[round(p, 3) for p in ppl]} ({time.perf_counter() - tick:.0f} s)")
    reference = rows[0]["mean_perplexity"]
    header = ["store", "bytes / token", "max abs log-prob error", "mean abs log-prob error",
              "KL(true ‖ stored) per position (nats)", f"student test perplexity, seeds 1–{args.seeds}", "mean",
              "mean vs schema 1"]
    table = [[r["store"], f"{r['bytes']:.0f}", f"{r['max_error']:.3f}", f"{r['mean_error']:.4f}", f"{r['kl']:.1e}",
              ", ".join(f"{p:.2f}" for p in r["test_perplexity"]), f"{r['mean_perplexity']:.2f}",
              f"{r['mean_perplexity'] / reference - 1:+.2%}"] for r in rows]
    print(markdown_table(header, table))
    if not args.quick:  # a smoke run's numbers do not belong on the page
        publish(args, "lm-benchmarks.md", "lm-softlabel-encoding", markdown_table(header, table))
    print(f"\nk={k}, V={len(teacher.tokenizer)}, transfer {rows[0]['tokens']} tokens, model "
          f"{recipe.model['n_layer']}x{recipe.model['n_embd']}, students {recipe.student_epochs} epochs at T=1, "
          f"seed {recipe.seed}, teacher perplexity {perplexity(teacher.model, teacher.test_blocks):.2f}; "
          f"total {time.perf_counter() - start:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    assert all(math.isfinite(r["mean_perplexity"]) for r in rows)


if __name__ == "__main__":
    main()
