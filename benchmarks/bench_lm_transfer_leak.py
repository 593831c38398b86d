"""Does a memorized secret leak through top-k soft labels when the transfer text holds its prefix?

Usage: python benchmarks/bench_lm_transfer_leak.py [--quick] [--members-bytes 300000]
           [--transfer-bytes 300000] [--prefix-copies 20] [--no-clean] [--ks 8,128] [--temperatures 1,2]
           [--teacher-epochs 20] [--student-epochs 6] [--references 2000] [--teacher-cache DIR]
           [--json results.json]

A tiny GPT-2 teacher (the library defaults: 2 layers, d=64, context 128, byte-level BPE
of 2048 tokens fitted on the transfer text only) is trained on the built-in ``pii-corpus``
members, where canaries are planted 1, 4 and 16 times (two canaries each, different
templates). The exposure probe (Carlini et al. 2019, 2,000 random fillings, so at most
log2(2001) ≈ 11 bits) checks that the teacher memorized the 16× ones. Students of the same
architecture are then distilled (forward KL) from the teacher's top-k soft labels on

- (a) **clean**: the built-in transfer text (public-style, no canary prefixes), and
- (b) **prefixed**: the same text plus each canary's prefix, verbatim, as a document of its
  own, ``--prefix-copies`` times (20), shuffled in. The secrets themselves are never in it.

for each top-k and temperature, and each student is probed for exposure of the 16× and 4×
canaries, with its test perplexity (held-out text of the private distribution). The
prefix guard (:func:`distillguard.lm.prefix_guard.find_secret_contexts`) is run on both
transfer sets. An untrained model of the same architecture gives the exposure that
tokenization alone produces. Everything is seeded; the table goes to stdout, progress to
stderr. Times on a shared machine are inflated; compare rows of one run only.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path

from lm_bench_common import (
    Recipe,
    add_recipe_flags,
    canaries_at,
    distill,
    label,
    log,
    markdown_table,
    mean_exposure,
    perplexity,
    parse_args,
    train_teacher,
)
from results_page import add_docs_flag, publish

from distillguard.lm.models import build_causal_lm
from distillguard.lm.prefix_guard import find_secret_contexts
from distillguard.seeding import derive_seed

QUICK = {"members_bytes": 30_000, "transfer_bytes": 30_000, "vocab_size": 512, "block_len": 64,
         "teacher_epochs": 10, "student_epochs": 3, "references": 200, "ks": "8,128", "temperatures": "1,2"}


def prefixed_transfer(transfer: list[str], prefixes: list[str], *, copies: int, seed: int) -> list[str]:
    """The transfer documents plus ``copies`` documents of each prefix, shuffled (seeded)."""
    docs = transfer + [p for p in prefixes for _ in range(copies)]
    random.Random(derive_seed(seed, "prefixed-transfer")).shuffle(docs)
    return docs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_recipe_flags(parser, Recipe())
    parser.add_argument("--quick", action="store_true", help="small corpus and models: a smoke run of ~2 minutes")
    parser.add_argument("--prefix-copies", default="20",
                        help="comma-separated copies of each prefix; one prefixed condition per value")
    parser.add_argument("--no-clean", action="store_true", help="skip the clean-transfer students")
    parser.add_argument("--ks", default="8,128", help="comma-separated top-k values (capped at the vocabulary)")
    parser.add_argument("--temperatures", default="1,2", help="comma-separated distillation temperatures")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    add_docs_flag(parser)
    args, recipe = parse_args(parser, QUICK)
    ks = sorted({min(int(k), recipe.vocab_size) for k in args.ks.split(",")})
    temperatures = [float(t) for t in args.temperatures.split(",")]
    start = time.perf_counter()

    teacher = train_teacher(recipe, cache=args.teacher_cache)
    corpus, tokenizer = teacher.corpus, teacher.tokenizer
    groups = {16: canaries_at(corpus, 16), 4: canaries_at(corpus, 4), 1: canaries_at(corpus, 1)}

    def probe(model) -> dict[str, float]:
        out = {f"exposure_{r}x": mean_exposure(model, tokenizer, groups[r], n_references=recipe.n_references,
                                               seed=recipe.seed) for r in (16, 4)}
        out["test_perplexity"] = perplexity(model, teacher.test_blocks)
        return out

    rows: list[dict[str, object]] = []
    untrained = build_causal_lm(recipe.model, tokenizer=tokenizer, seed=derive_seed(recipe.seed, "student-init"))
    rows.append({"condition": "untrained model", "k": "-", "T": "-", **probe(untrained), "flagged": "-"})
    teacher_row = {"condition": "teacher", "k": "-", "T": "-", **probe(teacher.model), "flagged": "-"}
    teacher_row["exposure_1x"] = mean_exposure(teacher.model, tokenizer, groups[1],
                                               n_references=recipe.n_references, seed=recipe.seed)
    rows.append(teacher_row)
    log(f"teacher exposure 16x {teacher_row['exposure_16x']:.2f}, 4x {teacher_row['exposure_4x']:.2f}, "
        f"1x {teacher_row['exposure_1x']:.2f} bits; test ppl {teacher_row['test_perplexity']:.2f}")

    transfers = {"clean": corpus.transfer}
    for copies in (int(c) for c in args.prefix_copies.split(",")):
        transfers[f"prefixed ({copies}x each)"] = prefixed_transfer(
            corpus.transfer, [c.prefix for c in corpus.canaries], copies=copies, seed=recipe.seed)
    guard = {}
    for name, texts in transfers.items():
        hits = find_secret_contexts(texts, corpus.canaries)
        guard[name] = (f"yes ({len({h.canary_id for h in hits})}/{len(corpus.canaries)} canaries, "
                       f"{len(hits)} docs)" if hits else "no")
        log(f"prefix guard on {name}: {guard[name]}")

    with tempfile.TemporaryDirectory(prefix="bench-lm-leak-") as scratch:
        for name, texts in transfers.items():
            if name == "clean" and args.no_clean:
                continue
            for k in ks:
                folder = Path(scratch) / f"{name.split()[0]}-k{k}"
                meta = label(teacher, texts, folder=folder, k=k, block_len=recipe.block_len)
                for temperature in temperatures:
                    tick = time.perf_counter()
                    student = distill(teacher, folder, recipe=recipe, temperature=temperature,
                                      seed_name=f"{name}-{k}-{temperature}")
                    row = {"condition": f"student, {name}", "k": k, "T": temperature, **probe(student),
                           "flagged": guard[name], "transfer_tokens": meta["n_tokens"]}
                    rows.append(row)
                    log(f"{name} k={k} T={temperature}: exposure 16x {row['exposure_16x']:.2f} "
                        f"4x {row['exposure_4x']:.2f} ppl {row['test_perplexity']:.2f} "
                        f"({time.perf_counter() - tick:.0f} s)")

    max_bits = f"{math.log2(recipe.n_references + 1):.1f}"
    header = ["condition", "k", "T", f"exposure 16× (bits, max {max_bits})", "exposure 4× (bits)",
              "test perplexity", "prefix guard flags the transfer set"]
    table = [[r["condition"], r["k"], r["T"], f"{r['exposure_16x']:.1f}", f"{r['exposure_4x']:.1f}",
              f"{r['test_perplexity']:.1f}", r["flagged"]] for r in rows]
    print(markdown_table(header, table))
    if not args.quick and not args.no_clean:  # the page's block holds the full grid, clean rows included
        publish(args, "lm-benchmarks.md", "lm-transfer-leak", markdown_table(header, table))
    print(f"\nteacher exposure of the 1× canaries: {teacher_row['exposure_1x']:.1f} bits; "
          f"a secret no more likely than a random filling averages 1.4 bits.")
    print(f"members {args.members_bytes} B, transfer {args.transfer_bytes} B "
          f"({rows[-1].get('transfer_tokens')} tokens in the last set), V={recipe.vocab_size}, "
          f"model {recipe.model['n_layer']}x{recipe.model['n_embd']}, teacher {recipe.teacher_epochs} epochs, "
          f"students {recipe.student_epochs} epochs, {recipe.n_references} references, seed {recipe.seed}; "
          f"total {time.perf_counter() - start:.0f} s (teacher {teacher.seconds:.0f} s)")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2, default=str) + "\n")
    clean_hit = guard["clean"] != "no"
    prefixed_missed = any(v == "no" for n, v in guard.items() if n != "clean")
    if clean_hit or prefixed_missed:
        print("prefix guard: UNEXPECTED (flags the clean set or misses the prefixed one)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
