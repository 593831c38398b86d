"""How evenly the teacher's released labels cover the classes of the transfer set.

A student learns a class only from transfer records the teacher puts in it. A transfer
set the teacher labels almost entirely as one class (public data of another population,
or one slice of it) trains a student that never learns the others, with no error along
the way; the report says so. Only class counts are read: no record values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distillguard.data.softlabel_shards import iter_label_shards
from distillguard.runs import read_json

#: A class is under-covered when it gets less than this fraction of an even share of the labels.
UNDER_COVERED = 0.1
#: Warn when at least this fraction of the classes (and at least one) is under-covered.
MANY = 0.1


def label_counts(softlabels: Path) -> np.ndarray | None:
    """Transfer records per class by the teacher's released label (argmax of the logits); None if absent."""
    meta_path = softlabels / "meta.json"
    if not meta_path.is_file():
        return None
    n_classes = int(read_json(meta_path)["n_classes"])
    counts = np.zeros(n_classes, dtype=np.int64)
    for _, targets in iter_label_shards(softlabels):
        labels = targets if targets.ndim == 1 else np.argmax(targets, axis=1)
        counts += np.bincount(labels, minlength=n_classes)
    return counts


def coverage_warning(counts: np.ndarray, classes: list) -> str | None:
    """A warning when a tenth of the classes or more (at least one) get under a tenth of an even share.

    The demo (100 classes, 3,000 transfer records) has one class with a single record: no
    warning; one class of two with 10 of 3,000 records: a warning.
    """
    total, n_classes = int(counts.sum()), len(counts)
    if total == 0 or n_classes < 2:
        return None
    even = total / n_classes
    low = np.flatnonzero(counts < UNDER_COVERED * even)
    if low.size < max(1.0, MANY * n_classes):  # a rare class or two among many is the data, not the set
        return None
    named = ", ".join(f"{classes[i]!r}: {int(counts[i])}" for i in low[:5]) + (", …" if low.size > 5 else "")
    top = int(np.argmax(counts))
    return (f"the transfer set covers the classes very unevenly: the teacher labels {int(counts[top])} of {total} "
            f"transfer records as {classes[top]!r}, and {low.size} of {n_classes} classes get under "
            f"{UNDER_COVERED:.0%} of an even share ({named}); the student learns little about those classes: "
            "use transfer records that cover every class")
