"""PATE's teachers: one model per disjoint partition of the members (Papernot et al. 2017).

Papernot et al. 2017 ("Semi-supervised knowledge transfer for deep learning from
private training data") train n teachers on disjoint partitions of the private data;
a student learns only from their noisily aggregated votes on public inputs. This module
trains the teachers and reads their votes; the noisy aggregation (GNMax,
Confident-GNMax) and its RDP accounting are pure maths and live in
:mod:`distillguard.privacy` (``aggregation``, ``pate_rdp``, ``pate_data_dependent``,
``pate_record``).

One record lives in exactly one partition, so changing it changes one teacher's vote:
that is the sensitivity the accounting relies on, and why the teachers share a scaler
fitted on public data.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from distillguard.config import TeacherConfig
from distillguard.data.preprocessing import Standardizer
from distillguard.data.types import Schema, Split
from distillguard import distributed
from distillguard.checkpoints import Checkpoint
from distillguard.errors import ArtifactError, ConfigError
from distillguard.models.artifact import Classifier
from distillguard.models.classifiers import Ensemble, build_model, ensemble_architecture
from distillguard.seeding import derive_seed
from distillguard.train.batched import fit_many
from distillguard.train.loop import Recipe
from distillguard.train.teacher import model_architecture, teacher_loss


# --------------------------------------------------------------------------- partitions


def partition_rows(n: int, n_teachers: int, *, seed: int) -> list[np.ndarray]:
    """Split ``range(n)`` at random into ``n_teachers`` disjoint parts of sizes differing by ≤ 1.

    Returns:
        ``n_teachers`` sorted int64 index arrays that together cover ``range(n)`` once.
    """
    if not 1 <= n_teachers <= n:
        raise ConfigError(
            f"The 'n_teachers' parameter of partition_rows must be in [1, n={n}]. Got {n_teachers} instead."
        )
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part).astype(np.int64) for part in np.array_split(order, n_teachers)]


# --------------------------------------------------------------------------- teachers


def fit_partitions(arch: dict, X: torch.Tensor, y: torch.Tensor, parts: list[np.ndarray], *, recipe: Recipe,
                   seeds: list[int], batched: bool | None = None, on_epoch=None,
                   checkpoint: Checkpoint | None = None, split_ranks: bool = False,
                   loss_fn=F.cross_entropy) -> list[dict[str, torch.Tensor]]:
    """Train one model per row set with ``loss_fn`` (the teacher's loss), many at once (:func:`fit_many`).

    ``fit_many`` needs one row count per call, and partitions differ by at most one row,
    so the models train in one batched group per distinct size. Model k is exactly
    ``loop.fit(build_model(arch, seed=seeds[k]), X[parts[k]], y[parts[k]], seed=seeds[k])``
    with its last epoch kept (no selection on private data).

    Args:
        split_ranks: under torchrun, each rank trains a contiguous share of the models and
            the states are gathered on every rank (the models are independent, and a model
            trains the same in any group, so the result is the single process's).

    Returns:
        One state dict per part, in the order of ``parts``.
    """
    here = distributed.world()
    if split_ranks and here.size > 1:
        mine = [k for k in range(len(parts)) if k * here.size // len(parts) == here.rank]
        slot = checkpoint.child(f"rank{here.rank}of{here.size}") if checkpoint is not None else None
        local = fit_partitions(arch, X, y, [parts[k] for k in mine], recipe=recipe, seeds=[seeds[k] for k in mine],
                               batched=batched, on_epoch=on_epoch, checkpoint=slot, loss_fn=loss_fn)
        trained = {k: state for rank_states in distributed.gather(dict(zip(mine, local)))
                   for k, state in rank_states.items()}
        return [trained[k] for k in range(len(parts))]
    states: list[dict[str, torch.Tensor] | None] = [None] * len(parts)
    for size in sorted({len(p) for p in parts}):
        which = [k for k, p in enumerate(parts) if len(p) == size]
        rows = torch.from_numpy(np.stack([parts[k] for k in which]).astype(np.int64))  # (k, size)
        group = fit_many(arch, X, y, rows=rows, loss_fn=loss_fn, recipe=recipe,
                         seeds=[seeds[k] for k in which], batched=batched, on_epoch=on_epoch,
                         checkpoint=checkpoint.child(f"size{size}") if checkpoint is not None else None)
        for k, state in zip(which, group):
            states[k] = state
    return states


def partition_groups(n: int, n_teachers: int) -> int:
    """How many batched groups :func:`fit_partitions` trains for ``n`` rows in ``n_teachers`` parts (1 or 2)."""
    return 1 if n % n_teachers == 0 else 2


def teacher_seeds(seed: int, n_teachers: int) -> list[int]:
    """Seeds of the ensemble's teachers (initialization and batch order)."""
    return [derive_seed(seed, "pate", t) for t in range(n_teachers)]


def train_teacher_ensemble(members: Split, *, schema: Schema, cfg: TeacherConfig, n_teachers: int, seed: int,
                           scaler: Standardizer, batched: bool | None = None, on_epoch=None,
                           checkpoint: Checkpoint | None = None) -> list[Classifier]:
    """One teacher per disjoint partition of the members (Papernot et al. 2017, Sec. 2.1).

    Each teacher is trained as ``loop.fit`` would on its partition for ``cfg.epochs``
    epochs (all at once, :func:`fit_partitions`) and keeps its last epoch:
    ``cfg.val_fraction`` is ignored, since selecting on held-out members would be a
    private choice outside the accounting. The partition uses
    ``derive_seed(seed, "pate", "partition")``; teacher t draws its initialization and
    batches from ``derive_seed(seed, "pate", t)``.

    Args:
        scaler: standardization every teacher shares; fit it on public data so the
            teachers carry no statistics of the members (a member-fitted scaler would
            move every teacher at once and break the one-vote sensitivity).

    Returns:
        ``n_teachers`` classifiers, in partition order.
    """
    if members.y is None:
        raise ConfigError("PATE teachers need labeled members (members.y is None)")
    if not 1 <= n_teachers <= len(members):
        raise ConfigError(f"[privacy].teachers = {n_teachers}: must be between 1 and the number of members "
                          f"({len(members)}), one partition per teacher")
    arch = model_architecture(cfg, schema)
    X = torch.from_numpy(scaler.transform(members.X))  # (n, d)
    y = torch.from_numpy(members.y).long()  # (n,)
    parts = partition_rows(len(members), n_teachers, seed=derive_seed(seed, "pate", "partition"))
    states = fit_partitions(arch, X, y, parts, recipe=Recipe.from_config(cfg), seeds=teacher_seeds(seed, n_teachers),
                            batched=batched, on_epoch=on_epoch, checkpoint=checkpoint, split_ranks=True,
                            loss_fn=teacher_loss(cfg))  # label smoothing too: each teacher is trained as the recipe says
    teachers = []
    for state in states:
        model = build_model(arch, seed=0)
        model.load_state_dict(state)
        model.eval()
        teachers.append(Classifier(model, arch, schema, scaler))
    return teachers


def as_ensemble(teachers: list[Classifier]) -> Classifier:
    """The teachers as one :class:`Ensemble` classifier (shared scaler): what teacher/ stores."""
    first = teachers[0]
    if any(t.scaler is not first.scaler and t.scaler.to_dict() != first.scaler.to_dict() for t in teachers):
        raise ValueError("ensemble members must share one scaler")
    model = Ensemble([t.model for t in teachers])
    model.eval()
    return Classifier(model, ensemble_architecture(first.arch, members=len(teachers)), first.schema, first.scaler)


def ensemble_votes(ensemble: Classifier, X: np.ndarray) -> np.ndarray:
    """(T, n) int64 argmax of each member of a stored :class:`Ensemble` on raw (n, d) rows."""
    if not isinstance(ensemble.model, Ensemble):
        raise ArtifactError("the teacher folder holds a single model, not a PATE ensemble; rerun the teacher stage "
                            'with [privacy] mechanism = "pate"')
    with torch.no_grad():
        inputs = torch.from_numpy(ensemble.scaler.transform(np.asarray(X, dtype=np.float32)))
        chunks = [ensemble.model.member_logits(chunk).argmax(-1) for chunk in inputs.split(4096)]
    return (torch.cat(chunks, dim=1) if chunks else torch.empty(len(ensemble.model.members), 0)).numpy().astype(np.int64)


def ensemble_predictions(teachers: list[Classifier], X: np.ndarray) -> np.ndarray:
    """(T, n) int64 argmax predictions of each teacher on raw (n, d) rows, for :func:`vote_counts`."""
    return np.stack([teacher.logits(X).argmax(axis=1) for teacher in teachers]).astype(np.int64)
