"""The label stage streams: its peak memory does not grow with the length of the transfer corpus.

Measured in a fresh interpreter (peak RSS is per process): label a short corpus to warm
every allocator, then one 16 times longer. Held in memory, the longer corpus's labels
would take ~80 MB (51,200 positions x k = 256 x 6 bytes); streamed, the peak stays put.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json, resource, sys, tempfile
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    from distillguard.lm.softlabels import write_soft_labels

    torch.set_num_threads(1)
    torch.manual_seed(0)
    teacher = GPT2LMHeadModel(GPT2Config(vocab_size=512, n_positions=64, n_embd=32, n_layer=1, n_head=2)).eval()

    def blocks(n):  # a generator: the corpus is never materialized
        g = torch.Generator().manual_seed(n)
        for _ in range(n):
            yield torch.randint(0, 512, (64,), generator=g).tolist()

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    out = {}
    for name, n in (("warmup", 50), ("short", 50), ("long", 800)):
        with tempfile.TemporaryDirectory() as folder:
            meta = write_soft_labels(teacher, blocks(n), folder=folder, k=256, batch_size=16, rows_per_shard=64)
            out[name] = {"peak_mb": peak_mb(), "tokens": meta["n_tokens"], "shards": len(meta["shards"])}
    print(json.dumps(out))
""")


def test_label_peak_memory_does_not_grow_with_corpus_length():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["long"]["tokens"] == 16 * out["short"]["tokens"] == 51_200 and out["long"]["shards"] == 13
    held = out["long"]["tokens"] * 256 * 6 / 2**20  # MB the long corpus's labels would take in memory
    growth = out["long"]["peak_mb"] - out["short"]["peak_mb"]
    assert held > 70 and growth < 15, out  # a non-streaming writer would grow by ~held
