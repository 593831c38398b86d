"""Shadow pipelines that replay the whole defense, and the canaries planted in them.

Attacks on a student must be calibrated on students (Jagielski et al. 2023, "Students
Parrot Their Teachers"): each shadow trains a teacher on a random half of the audit
pool with the teacher's recipe, labels the transfer set with it, and distills a student
with the student's recipe. Shadows come in complementary pairs, so every pool record is
in exactly half of them and every shadow trains on the same number of records, which
lets them train many-at-once (:func:`distillguard.train.batched.fit_many`).

Shadows are independent given their index s: seeds are derived from s, and membership and
canary inclusion are (S, ·) arrays fixed up front. So every trainer here takes the
absolute ids of the shadows to train (``shadow_ids``, default all S) and training any
split of range(S) gives each shadow the logits it gets in one call, which is what lets
the audit farm chunks of shadows out to a cluster (:mod:`distillguard.audit.ray_backend`).

Canaries (Aerni, Zhang & Tramèr 2024) exist only in these replicas: K slots per shadow,
each filled by its canary or by a decoy of the same kind, independently with
probability 1/2. Training-set sizes stay equal and inclusions stay independent, which
the one-run ε audit (Steinke, Nasr & Jagielski 2023) needs. The shipped teacher and
student never see a canary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from distillguard.audit.shadow_recipes import PLAIN
from distillguard.config import Spec
from distillguard.data.preprocessing import Standardizer
from distillguard.data.types import Schema, Split
from distillguard.errors import ConfigError
from distillguard.models.classifiers import model_arch
from distillguard.seeding import derive_seed
from distillguard.checkpoints import Checkpoint
from distillguard.train.batched import fit_many, predict_many
from distillguard.train.loop import Recipe, accuracy
from distillguard.train.release import Release, release
from distillguard.train.student import block_sizes, distill_objective, flat_positions, student_split
from distillguard.train.teacher import model_architecture, teacher_loss


@dataclass(frozen=True)
class AuditPool:
    """The records the audit scores: trained members and as many nonmembers (or vice versa).

    Attributes:
        X: (n, d) raw features; y: (n,) class indices; is_member: (n,) bool for the real teacher.
        example_ids: ("members:12", "nonmembers:3", ...) one per record.
    """

    X: np.ndarray
    y: np.ndarray
    is_member: np.ndarray
    example_ids: list[str]


def build_pool(members: Split, nonmembers: Split, *, seed: int) -> AuditPool:
    """members ∪ nonmembers with the larger side subsampled to the smaller's size."""
    k = min(len(members), len(nonmembers))
    rng = np.random.default_rng(derive_seed(seed, "pool"))
    m_rows = np.sort(rng.choice(len(members), k, replace=False))
    n_rows = np.sort(rng.choice(len(nonmembers), k, replace=False))
    return AuditPool(
        X=np.concatenate([members.X[m_rows], nonmembers.X[n_rows]]),
        y=np.concatenate([members.y[m_rows], nonmembers.y[n_rows]]),
        is_member=np.r_[np.ones(k, bool), np.zeros(k, bool)],
        example_ids=[f"members:{i}" for i in members.ids[m_rows]] + [f"nonmembers:{i}" for i in nonmembers.ids[n_rows]],
    )


def paired_membership(n_records: int, n_shadows: int, *, seed: int) -> np.ndarray:
    """(S, n) bool: shadow 2j takes a random half, shadow 2j+1 the other half."""
    if n_shadows < 2 or n_shadows % 2:
        raise ConfigError(f"[audit].shadows must be an even number ≥ 2, got {n_shadows}")
    rng = np.random.default_rng(derive_seed(seed, "membership"))
    masks = []
    for _ in range(n_shadows // 2):
        half = np.zeros(n_records, bool)
        half[rng.permutation(n_records)[: n_records // 2]] = True
        masks += [half, ~half]
    return np.stack(masks)


@dataclass(frozen=True)
class CanarySet:
    """Planted worst-case records (and their decoys) for the audit replicas.

    Attributes:
        X, decoy_X: (K, d) raw features; y, decoy_y: (K,) labels.
        repeats: (K,) how many copies a slot adds to a training set (duplicated canaries).
        kind: one name per canary.
        included: (S, K) bool, independent fair coins: canary k is in shadow s.
    """

    X: np.ndarray
    y: np.ndarray
    decoy_X: np.ndarray
    decoy_y: np.ndarray
    repeats: np.ndarray
    kind: list[str]
    included: np.ndarray

    def __len__(self) -> int:
        return len(self.X)


def plant_canaries(pool_X: np.ndarray, *, n_classes: int, count: int, duplicates: int, n_shadows: int, seed: int,
                   kind: str = "ood", source_X: np.ndarray | None = None, source_y: np.ndarray | None = None) -> CanarySet:
    """Worst-case records for the replicas: out-of-distribution, mislabeled real records, or half of each.

    ``kind = "ood"``: each feature drawn independently from its marginal in the pool, which
    breaks the correlations a class is made of, with a random label that only
    memorization can fit. ``kind = "mislabeled"``: real records of ``source_X`` (known
    non-members of the shipped models, e.g. the test set) with a label drawn among the
    *other* classes: Aerni, Zhang & Tramèr (2024)'s canaries, the most vulnerable records
    of real data. ``"both"``: the first ``count - count // 2`` slots ood, the rest
    mislabeled. Every other canary of each kind is duplicated ``duplicates`` times. A
    source with fewer than two records per mislabeled slot (canary and decoy) gives as many
    mislabeled canaries as it holds and ood ones for the rest.
    """
    if kind not in ("ood", "mislabeled", "both"):
        raise ValueError(f"canary kind must be 'ood', 'mislabeled' or 'both', got {kind!r}")
    n_mislabeled = {"ood": 0, "mislabeled": count, "both": count // 2}[kind]
    if n_mislabeled and source_X is not None:  # a small source: as many as it holds (canary + decoy each), ood for the rest
        n_mislabeled = min(n_mislabeled, len(source_X) // 2)
    n_ood = count - n_mislabeled
    rng = np.random.default_rng(derive_seed(seed, "canaries"))

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        cols = rng.integers(0, len(pool_X), size=(n, pool_X.shape[1]))
        return pool_X[cols, np.arange(pool_X.shape[1])].astype(pool_X.dtype), rng.integers(0, n_classes, size=n)

    X, y = draw(n_ood)
    decoy_X, decoy_y = draw(n_ood)
    repeats = np.where(np.arange(n_ood) % 2 == 1, duplicates, 1)
    kinds = ["ood_mislabeled" if r == 1 else f"ood_mislabeled_x{r}" for r in repeats]
    if n_mislabeled:
        mX, my, mdX, mdy = _mislabeled(source_X, source_y, n_mislabeled, n_classes=n_classes, seed=seed)
        X, y = np.concatenate([X, mX]), np.concatenate([y, my])
        decoy_X, decoy_y = np.concatenate([decoy_X, mdX]), np.concatenate([decoy_y, mdy])
        m_repeats = np.where(np.arange(n_mislabeled) % 2 == 1, duplicates, 1)
        repeats = np.concatenate([repeats, m_repeats])
        kinds += ["mislabeled" if r == 1 else f"mislabeled_x{r}" for r in m_repeats]
    included = rng.random((n_shadows, count)) < 0.5
    return CanarySet(X, y, decoy_X, decoy_y, repeats, kinds, included)


def _mislabeled(source_X: np.ndarray | None, source_y: np.ndarray | None, n: int, *, n_classes: int, seed: int):
    """``n`` canaries and ``n`` decoys: distinct real records of the source, each given a wrong label."""
    if source_X is None or source_y is None:
        raise ValueError("mislabeled canaries need real records to mislabel: give source_X and source_y")
    if len(source_X) < 2 * n:
        raise ValueError(f"mislabeled canaries: {n} canaries and {n} decoys need {2 * n} source records, "
                         f"the source has {len(source_X)}; plant fewer canaries")
    if n_classes < 2:
        raise ValueError("mislabeled canaries need at least 2 classes")
    rng = np.random.default_rng(derive_seed(seed, "canaries", "mislabeled"))
    rows = rng.choice(len(source_X), size=2 * n, replace=False)
    wrong = (np.asarray(source_y)[rows] + rng.integers(1, n_classes, size=2 * n)) % n_classes
    X = np.asarray(source_X)[rows].astype(np.float32)
    return X[:n], wrong[:n], X[n:], wrong[n:]


@dataclass(frozen=True)
class ShadowLogits:
    """Outputs of the S shadow teachers or students.

    Attributes:
        pool: (S, n, C) on the audit pool; population: (S, m, C) on the population set;
        canaries: (S, K, C) on the canaries; extra: name -> (S, r, C) on any other rows the
        audit asked for (the label-only attack's noisy copies, audit/label_only.py).
    """

    pool: np.ndarray
    population: np.ndarray
    canaries: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)


def shadow_range(membership: np.ndarray, shadow_ids: Sequence[int] | None) -> list[int]:
    """The absolute ids of the shadows to train: ``shadow_ids``, or all S of ``membership``."""
    ids = list(range(len(membership))) if shadow_ids is None else [int(s) for s in shadow_ids]
    if not ids or any(not 0 <= s < len(membership) for s in ids):
        raise ValueError(f"shadow ids must be a non-empty subset of range({len(membership)}), got {ids}")
    return ids


def _shadow_training_set(s: int, pool: AuditPool, canaries: CanarySet | None, membership: np.ndarray,
                         *, val_fraction: float, seed: int):
    rows = np.flatnonzero(membership[s])
    X, y = [pool.X[rows]], [pool.y[rows]]
    if canaries is not None:
        use = canaries.included[s]
        slot_X = np.where(use[:, None], canaries.X, canaries.decoy_X)
        slot_y = np.where(use, canaries.y, canaries.decoy_y)
        X.append(np.repeat(slot_X, canaries.repeats, axis=0))
        y.append(np.repeat(slot_y, canaries.repeats))
    # Checkpoint selection replays the teacher's: a held-out slice, here from the records
    # this shadow does not train on (they stay out, as the teacher's validation slice does).
    outside = np.flatnonzero(~membership[s])
    n_val = int(round(len(rows) * val_fraction / (1 - val_fraction))) if val_fraction > 0 else 0
    val = np.random.default_rng(derive_seed(seed, "shadow", s, "val")).choice(outside, min(n_val, len(outside)), replace=False)
    return np.concatenate(X), np.concatenate(y), pool.X[val], pool.y[val]


def train_shadow_teachers(pool: AuditPool, canaries: CanarySet | None, membership: np.ndarray, *, spec: Spec,
                          schema: Schema, eval_sets: dict[str, np.ndarray], shadow_ids: Sequence[int] | None = None,
                          on_model=None, checkpoint: Checkpoint | None = None, recipe: str = "replay",
                          ) -> tuple[dict[str, np.ndarray], list[Standardizer]]:
    """Train the shadow teachers ``shadow_ids`` (default all S); their logits on each of ``eval_sets``.

    ``recipe`` (:func:`shadow_recipe`): ``"replay"`` keeps each teacher's best validation
    epoch, as the real teacher; ``"plain"`` its last epoch; ``"both"`` trains once and
    returns both, the last epoch's logits under ``PLAIN + name``.

    Returns:
        name -> (len(shadow_ids), n, C) logits, in the order of ``shadow_ids``, and their scalers.
    """
    if spec.privacy.mechanism == "dp-sgd":  # no checkpoint selection: the last epoch is both recipes' teacher
        out = _train_dp_shadow_teachers(pool, canaries, membership, spec=spec, schema=schema, eval_sets=eval_sets,
                                        shadow_ids=shadow_ids, on_model=on_model, checkpoint=checkpoint)
        return {**out, **({PLAIN + k: v for k, v in out.items()} if recipe == "both" else {})}, []
    ids, cfg, seed = shadow_range(membership, shadow_ids), spec.teacher, spec.run.seed
    parts, scalers = [], []
    for s in ids:
        X, y, Xv, yv = _shadow_training_set(s, pool, canaries, membership, val_fraction=cfg.val_fraction, seed=seed)
        scaler = Standardizer.fit(X)  # as the teacher: statistics of its own training rows
        scalers.append(scaler)
        parts.append((scaler.transform(X), y, scaler.transform(Xv), yv))
    m, v = len(parts[0][0]), len(parts[0][2])
    X_all = torch.from_numpy(np.concatenate([np.concatenate([p[0], p[2]]) for p in parts]))
    y_all = torch.from_numpy(np.concatenate([np.concatenate([p[1], p[3]]) for p in parts]).astype(np.int64))
    offsets = torch.arange(len(ids))[:, None] * (m + v)
    arch = model_architecture(cfg, schema)
    select = bool(v) and recipe != "plain"  # "plain": no validation pass at all; the training is the same
    states = fit_many(
        arch, X_all, y_all, rows=offsets + torch.arange(m), val_rows=(offsets + m + torch.arange(v)) if select else None,
        loss_fn=teacher_loss(cfg), recipe=Recipe.from_config(cfg),
        seeds=[derive_seed(seed, "shadow", s, "teacher") for s in ids], metric=accuracy if select else None,
        batched=None if spec.audit.batched else False, on_epoch=on_model, checkpoint=checkpoint,
        with_last=select and recipe == "both",
    )
    states, last = states if select and recipe == "both" else (states, states)

    def logits_of(kept: list[dict]) -> dict[str, np.ndarray]:
        return {name: np.stack([
            predict_many(arch, [state], torch.from_numpy(scaler.transform(X_eval)))[0].double().numpy()
            for state, scaler in zip(kept, scalers)
        ]) for name, X_eval in eval_sets.items()}

    out = logits_of(states)
    if recipe == "both":
        out.update({PLAIN + k: z for k, z in (logits_of(last) if last is not states else dict(out)).items()})
    return out, scalers


def replay_releases(teacher_transfer_logits: np.ndarray, *, transfer_X: np.ndarray, pool: AuditPool,
                    canaries: CanarySet | None, membership: np.ndarray, spec: Spec,
                    shadow_ids: Sequence[int] | None = None, per_shadow: int | None = None) -> list[Release]:
    """What each shadow teacher releases: the real pipeline's selection rule and soft-label knobs,
    applied to that shadow's logits and private training set, with its own noise draw.

    Args:
        teacher_transfer_logits: (len(shadow_ids), q, C) the logits of shadows ``shadow_ids``
            (default all S) on the transfer rows, in that order.
        per_shadow: with DP synthetic transfer data, ``transfer_X`` holds S blocks of this many
            rows, block s being shadow s's own synthetic set: each shadow releases on its block
            (the rows of its release index ``transfer_X``). None: one transfer set for all.
    """
    ids = shadow_range(membership, shadow_ids)
    if len(ids) != len(teacher_transfer_logits):
        raise ValueError(f"{len(teacher_transfer_logits)} shadow teachers' logits for {len(ids)} shadow ids")
    if per_shadow is None and spec.softlabels.is_identity() and spec.transfer.is_identity():
        return [Release(np.arange(len(transfer_X)), z.astype(np.float32)) for z in teacher_transfer_logits]
    seed, out = spec.run.seed, []
    for s, logits in zip(ids, teacher_transfer_logits):
        block = slice(s * per_shadow, (s + 1) * per_shadow) if per_shadow is not None else slice(None)
        private_X = None
        if spec.transfer.select == "far_from_private":
            private_X = _shadow_training_set(s, pool, canaries, membership, val_fraction=0.0, seed=seed)[0]
        one = release(logits[block], transfer_X=transfer_X[block], private_X=private_X, softlabels=spec.softlabels,
                      transfer=spec.transfer, seed=seed, noise_seed=derive_seed(seed, "shadow", s, "softlabels"))
        out.append(Release(one.rows + (block.start or 0), one.targets) if per_shadow is not None else one)
    return out


def train_shadow_students(releases: list[Release], *, transfer_X: np.ndarray, spec: Spec, schema: Schema,
                          eval_sets: dict[str, np.ndarray], shadow_ids: Sequence[int] | None = None, on_model=None,
                          checkpoint: Checkpoint | None = None, transfer_blocks: np.ndarray | None = None,
                          select: bool = True) -> dict[str, np.ndarray]:
    """Distill one student per shadow release with the student's recipe; logits on ``eval_sets``.

    Each shadow student sees the transfer rows its teacher released, scaled with statistics
    of its own training rows, split and shuffled by transfer shard, as the real student is.

    Args:
        releases: the releases of shadows ``shadow_ids`` (default 0..len(releases)-1), in that order.
        transfer_blocks: (q,) the transfer shard of each query row, when they span several
            (``data.shard_numbers``); None: one shard.
        select: keep each student's best validation epoch (False: the last, the "plain" recipe).

    Returns:
        name -> (len(releases), n, C) logits.
    """
    S, cfg, seed = len(releases), spec.student, spec.run.seed
    ids = list(range(S)) if shadow_ids is None else [int(s) for s in shadow_ids]
    if len(ids) != S:
        raise ValueError(f"{S} shadow releases for {len(ids)} shadow ids")
    n = len(releases[0].rows)
    if any(len(r.rows) != n for r in releases):
        raise ValueError("shadow releases differ in size; transfer selection must keep a fixed count")
    shared = all(np.array_equal(r.rows, releases[0].rows) for r in releases)
    # The real student's blocks (one per transfer shard) shape its split and epoch order; the
    # shadow students replay them. Releases that differ per shadow (transfer selection on a
    # set larger than one shard) would give each its own block sizes: they train as one block.
    numbers, sizes = (block_sizes(transfer_blocks[releases[0].rows]) if shared and transfer_blocks is not None
                      else ((0,), (n,)))
    train_blocks, val_blocks = student_split(numbers, sizes, fraction=cfg.val_fraction, seed=seed)
    train_pos, val_pos = flat_positions(train_blocks, sizes), flat_positions(val_blocks, sizes)
    val_pos = val_pos if select else val_pos[:0]
    offsets_of = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    scalers = [Standardizer.fit_blocks(transfer_X[r.rows][offsets_of[k] + t] for k, t in enumerate(train_blocks))
               for r in (releases[:1] if shared else releases)]
    if shared:  # every shadow student sees the same inputs with its own teacher's labels: tile them
        X_all = torch.from_numpy(scalers[0].transform(transfer_X[releases[0].rows])).repeat(S, 1)
    else:
        X_all = torch.from_numpy(np.concatenate([sc.transform(transfer_X[r.rows]) for sc, r in zip(scalers, releases)]))
    targets = torch.from_numpy(np.concatenate([r.targets for r in releases]).astype(np.float32))
    offsets = torch.arange(S)[:, None] * n
    objective = distill_objective(spec.distill)
    arch = model_arch(cfg, schema)
    states = fit_many(
        arch, X_all, targets, rows=offsets + torch.from_numpy(train_pos),
        val_rows=(offsets + torch.from_numpy(val_pos)) if len(val_pos) else None,
        loss_fn=objective, recipe=Recipe.from_config(cfg),
        seeds=[derive_seed(seed, "shadow", s, "student") for s in ids],
        metric=(lambda logits, t: -float(objective(logits, t))) if len(val_pos) else None,
        batched=None if spec.audit.batched else False, on_epoch=on_model, checkpoint=checkpoint,
        blocks=[len(t) for t in train_blocks] if len(sizes) > 1 else None,
    )
    if shared:
        return {name: predict_many(arch, states, torch.from_numpy(scalers[0].transform(X_eval))).double().numpy()
                for name, X_eval in eval_sets.items()}
    return {name: np.stack([predict_many(arch, [states[s]], torch.from_numpy(scalers[s].transform(X_eval)))[0]
                            .double().numpy() for s in range(S)])
            for name, X_eval in eval_sets.items()}


def _train_dp_shadow_teachers(pool: AuditPool, canaries: CanarySet | None, membership: np.ndarray, *, spec: Spec,
                              schema: Schema, eval_sets: dict[str, np.ndarray], shadow_ids: Sequence[int] | None = None,
                              on_model=None, checkpoint: Checkpoint | None = None) -> dict[str, np.ndarray]:
    """Replay DP-SGD (Opacus cannot be vmapped): one private training per shadow, public scaler.

    Opacus' optimizer and accountant state are not checkpointed mid-training; each
    finished shadow's logits are, so a rerun retrains at most the one it was killed in.
    """
    from distillguard.train.dp import DPSettings, train_teacher_dp

    scaler = Standardizer.fit(eval_sets["transfer"])
    out: dict[str, list] = {name: [] for name in eval_sets}
    for s in shadow_range(membership, shadow_ids):
        slot = checkpoint.child(f"model{s}") if checkpoint is not None else None
        saved = slot.load() if slot is not None else None
        if saved is not None:
            for name in eval_sets:
                out[name].append(saved[name].numpy())
            if on_model is not None:
                on_model(s)
            continue
        X, y, _, _ = _shadow_training_set(s, pool, canaries, membership, val_fraction=0.0, seed=spec.run.seed)
        members = Split(X=X, y=y.astype(np.int64), ids=np.arange(len(X), dtype=np.int64))
        result = train_teacher_dp(members, schema=schema, cfg=spec.teacher, dp=DPSettings.from_privacy(spec.privacy),
                                  seed=derive_seed(spec.run.seed, "shadow", s, "teacher"), public_scaler=scaler,
                                  data_parallel=False)  # under torchrun each rank trains its own shadows
        for name, X_eval in eval_sets.items():
            out[name].append(result.classifier.logits(X_eval))
        if slot is not None:
            slot.save({name: torch.from_numpy(np.ascontiguousarray(out[name][-1])) for name in eval_sets}, point="done")
        if on_model is not None:
            on_model(s)
    return {name: np.stack(values) for name, values in out.items()}
