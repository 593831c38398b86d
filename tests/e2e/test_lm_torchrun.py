"""The language-model track under torchrun (2 CPU processes, gloo) gives the single-process report.

Teacher, reference model and student train data parallel (each rank computes its share
of every minibatch, weighted by tokens; DDP sums the gradients) and the label stage's
ranks label alternate batches. A single process with ``[run] batch_split = 2``
accumulates the same two shares, so the runs agree bit for bit (one thread each, no
dropout), soft-label shards included.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from tests_support import one_and_two_processes

pytestmark = pytest.mark.slow

ARCH = "arch = { layers = 1, width = 64, heads = 2, context = 64 }\n"
SPEC = (
    '[run]\nname = "lm-ddp"\nbatch_split = 2\n[data]\nbuiltin = "pii-corpus"\n'
    "[data.pii_corpus]\nmember_bytes = 8000\nnonmember_bytes = 4000\ntest_bytes = 3000\ntransfer_bytes = 12000\n"
    "canaries_per_count = 1\npii_mentions = [4]\npii_people_per_count = 1\n"
    "[teacher]\nepochs = 4\nlr = 3e-3\nbatch_size = 7\n" + ARCH + "tokenizer = { vocab_size = 400 }\n"
    "[student]\nepochs = 2\nlr = 3e-3\nbatch_size = 5\n" + ARCH + "[distill]\nloss = \"jsd\"\ntop_k = 16\n"
    "[softlabels]\nprivate_prediction = false\n"  # private prediction labels in one process
    "[audit]\nbootstrap = 10\n[audit.lm]\nexposure_references = 50\nreference_epochs = 1\nmia_texts = 20\n"
    "pii_records = 5\npii_samples = 1\npii_tokens = 8\nextraction_samples = 2\nextraction_tokens = 8\n"
    "extractable_texts = 3\nextractable_k = 8\nextractable_suffix = 4\ndivergence_samples = 1\n"
    "min_private_length = 12\n"
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    return one_and_two_processes(tmp_path_factory.mktemp("lm-ddp"), SPEC)


def test_lm_torchrun_report_equals_the_single_process_report(runs: tuple[Path, Path]) -> None:
    one, two = (json.loads((folder / "report.json").read_text()) for folder in runs)
    assert two == one  # every number, string and verdict
    assert 1.0 < one["utility"]["student"]["test_perplexity"] < 400  # a trained model, not two equal failures
    manifest = json.loads((runs[1] / "manifest.json").read_text())
    assert manifest["world_size"] == 2
    assert manifest["stages"]["teacher"]["params"]["batch_parts"] == 2


def test_lm_torchrun_soft_labels_equal_the_single_process_labels(runs: tuple[Path, Path]) -> None:
    one, two = (json.loads((folder / "softlabels" / "softlabels.json").read_text()) for folder in runs)
    assert one["shards"] == two["shards"]  # same files, rows, tokens and sha256
    for shard in one["shards"]:
        a, b = (pq.read_table(folder / "softlabels" / shard["file"]) for folder in runs)
        assert a.equals(b)
