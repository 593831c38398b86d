"""What the soft labels carry: the store's size per top-k, and secrets leaking through canary prefixes.

Reuses the teacher of a finished language-model run (``RUN/teacher``, ``RUN/spec.toml``)
and, per setting, relabels the transfer text, distills a fresh student with the run's
recipe and measures its test perplexity and canary exposure (2,000 references, the
run's seeds). Two experiments:

- ``store``: top-k in {8, 32, 128} on the run's transfer text: bytes per token on disk,
  against the full vocabulary (measured on the first ``--full-blocks`` blocks only: it
  is ~V/k times larger), and the student's perplexity;
- ``prefix``: each canary prefix appended ``--copies`` times to the transfer text (ending
  a public sentence, so the teacher's next-token labels right after the prefix are its
  memorized secret), at several top-k and temperatures: does the secret leak?

Usage: python benchmarks/bench_lm_transfer.py RUN {store,prefix} [--out FILE.json]
Prints markdown. Not a test: numbers depend on the machine; on a shared CPU each setting
takes minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
import time
from pathlib import Path

from distillguard.config import load_spec
from distillguard.data.text import load_canaries, load_texts
from distillguard.lm.blocks import encode_blocks, iter_token_blocks
from distillguard.lm.models import build_causal_lm, context_length, load_causal_lm
from distillguard.lm.probes import canary_exposure
from distillguard.lm.softlabels import SoftLabelReader, bytes_per_token, write_soft_labels
from distillguard.lm.train import distill_causal_lm, evaluate_lm_loss
from distillguard.report.gate import mean_top_exposure
from distillguard.seeding import derive_seed


def prefix_documents(transfer: list[str], canaries, *, copies: int, seed: int) -> list[str]:
    """``copies`` public sentences per canary, each ending with the canary's prefix."""
    rng = random.Random(seed)
    return [rng.choice(transfer).split(". ")[0] + ". " + c.prefix.rstrip() for c in canaries for _ in range(copies)]


def one_setting(spec, teacher, tokenizer, transfer, canaries, test, *, k: int, temperature: float,
                full_blocks: int = 0) -> dict:
    seed, started = spec.run.seed, time.perf_counter()
    block_len = context_length(teacher)
    with tempfile.TemporaryDirectory() as tmp:
        write_soft_labels(teacher, iter_token_blocks(tokenizer, transfer, block_len=block_len), folder=tmp, k=k)
        size = bytes_per_token(tmp)
        student = build_causal_lm(spec.student.arch.model_config_dict(), tokenizer=tokenizer,
                                  seed=derive_seed(seed, "student", "init"))
        distill_causal_lm(student, SoftLabelReader(tmp), loss=spec.distill.lm_loss(), beta=spec.distill.beta,
                          temperature=temperature, epochs=spec.student.epochs, lr=spec.student.lr,
                          batch_size=spec.student.batch_size, seed=derive_seed(seed, "student", "train"))
    out = {"k": k, "temperature": temperature, "bytes_per_token": size,
           "student_test_perplexity": math.exp(evaluate_lm_loss(student, encode_blocks(tokenizer, test, block_len=block_len)))}
    if full_blocks:
        vocab = int(teacher.get_output_embeddings().weight.shape[0])
        blocks = list(iter_token_blocks(tokenizer, transfer, block_len=block_len))[:full_blocks]
        with tempfile.TemporaryDirectory() as tmp:
            write_soft_labels(teacher, blocks, folder=tmp, k=vocab)
            out["full_vocab_bytes_per_token"] = bytes_per_token(tmp)
    probes = []
    for cid, c in enumerate(canaries):
        r = canary_exposure(student, tokenizer, prefix=c.prefix, secret=c.secret, alphabet=c.alphabet,
                            n_references=spec.audit.lm.exposure_references, seed=derive_seed(seed, "exposure", cid))
        probes.append({"probe": "exposure", "target": "student", "canary_id": cid, "repetitions": c.repetitions,
                       "exposure_bits": r.exposure_bits, "max_bits": r.max_bits})
    out["mean_exposure_top"], out["top_repetitions"] = mean_top_exposure(probes, "student")
    out["exposure"] = [round(p["exposure_bits"], 2) for p in probes]
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished language-model run folder")
    parser.add_argument("experiment", choices=("store", "prefix"))
    parser.add_argument("--k", type=int, nargs="+", default=None)
    parser.add_argument("--temperature", type=float, nargs="+", default=[1.0])
    parser.add_argument("--copies", type=int, default=20)
    parser.add_argument("--full-blocks", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    spec = load_spec(args.run / "spec.toml")
    teacher, tokenizer = load_causal_lm(args.run / "teacher")
    seed = spec.run.seed
    transfer, test = load_texts(spec.data, "transfer", seed=seed), load_texts(spec.data, "test", seed=seed)
    canaries = load_canaries(spec.data, seed=seed)
    if args.experiment == "prefix":
        extra = prefix_documents(transfer, canaries, copies=args.copies, seed=seed)
        transfer = transfer + extra
        random.Random(seed).shuffle(transfer)
    rows = []
    for k in args.k or ([8, 32, 128] if args.experiment == "store" else [8, 32, 128]):
        for temperature in args.temperature:
            row = one_setting(spec, teacher, tokenizer, transfer, canaries, test, k=k, temperature=temperature,
                              full_blocks=args.full_blocks if args.experiment == "store" and k == (args.k or [8])[0] else 0)
            row["experiment"], row["copies"] = args.experiment, args.copies if args.experiment == "prefix" else 0
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.out:
                args.out.write_text(json.dumps(rows, indent=2))
    print("\n| experiment | k | T | bytes/token | student test ppl | student mean exposure (top reps) | per canary | s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['experiment']} | {r['k']} | {r['temperature']} | {r['bytes_per_token']:.0f} | "
              f"{r['student_test_perplexity']:.2f} | {r['mean_exposure_top']:.2f} | {r['exposure']} | {r['seconds']} |")


if __name__ == "__main__":
    main()
