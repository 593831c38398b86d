"""Stage 2: the teacher's logits (T=1) on the transfer inputs, as Parquet shards.

Logits, not probabilities, are stored so the distill stage can apply any temperature
without precision loss. Each shard holds ``example_id`` and a fixed-size list of
float32 logits; ``meta.json`` records the teacher's weight hash and the schema.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distillguard import distributed, progress
from distillguard.checkpoints import failpoint
from distillguard.config import Spec
from distillguard.data import TransferGuard, data_fingerprint, guard_transfer, iter_transfer, load_role
from distillguard.data.leakguard import merge_reports
from distillguard.data.softlabel_shards import (QUERIES, SYNTHETIC_INPUTS, read_shard_ids, write_label_shards,
                                                write_logit_shards, write_logit_table, write_queries)
from distillguard.errors import ConfigError
from distillguard.models.artifact import load_classifier
from distillguard.runs import RunDir, atomic_write_json
from distillguard.seeding import derive_seed
from distillguard.stages.common import execute_stage

OUTPUT = "softlabels"


def run_label_stage(spec: Spec, run: RunDir) -> bool:
    if spec.teacher.split_ai is not None and spec.teacher.split_ai.self_distill:
        from distillguard.stages.self_distill import run_self_distill_label_stage

        return run_self_distill_label_stage(spec, run)
    inputs = {
        "data.members": data_fingerprint(spec.data, "members"),
        "data.nonmembers": data_fingerprint(spec.data, "nonmembers"),
        "teacher/model.safetensors": run.output_hash("teacher", "teacher/model.safetensors"),
        "teacher/config.json": run.output_hash("teacher", "teacher/config.json"),
        "data.transfer": data_fingerprint(spec.data, "transfer"),
    }
    params = {"data": spec.data.fingerprint_params(), "seed": spec.run.seed, "temperature": 1.0,
              "softlabels": spec.section_dict("softlabels"), "transfer": spec.section_dict("transfer")}
    if spec.privacy.mechanism == "pate":
        params["privacy"] = spec.section_dict("privacy")
    # The leak guard compares the transfer set with the private data, so this stage reads
    # members and nonmembers (the teacher's side of the wall); the distill stage does not.

    def build(folder: Path) -> dict:
        teacher, _ = load_classifier(run / "teacher")
        if spec.privacy.mechanism != "pate" and spec.softlabels.is_identity() and spec.transfer.is_identity():
            return _stream_logits(spec, folder, teacher=teacher, inputs=inputs)
        synthetic = None
        if spec.transfer.synthetic is not None:  # DP synthetic rows instead of the transfer records
            transfer, leaks, synthetic = _synthetic_transfer(spec, folder, schema=teacher.schema)
        else:
            transfer = load_role(spec.data, "transfer", schema=teacher.schema, seed=spec.run.seed)
            keep, leaks = guard_transfer(spec.data, transfer, schema=teacher.schema, seed=spec.run.seed)
            _log_leaks(spec, leaks)
            transfer = transfer.subset(keep)
        if spec.privacy.mechanism == "pate":
            return _write_pate_labels(spec, folder, teacher=teacher, transfer=transfer, inputs=inputs, leaks=leaks)
        out = _release(spec, teacher, transfer)
        released = np.zeros(len(transfer), dtype=bool)
        released[out.rows] = True
        shards = write_logit_shards(folder, ids=transfer.ids[out.rows], logits_of=np.asarray, X=out.targets,
                                    shard_rows=spec.run.shard_rows)
        write_queries(folder, ids=transfer.ids, answered=released)
        return _write_meta(spec, folder, teacher=teacher, inputs=inputs, leaks=leaks, shards=shards,
                           n_records=int(released.sum()), n_queries=len(transfer), synthetic=synthetic)

    return execute_stage(run, "label", params=params, inputs=inputs, output=OUTPUT, build=build)


def _stream_logits(spec: Spec, folder: Path, *, teacher, inputs: dict) -> dict:
    """The default path: read, guard and label the transfer set one shard at a time.

    Memory is bounded by ``[run] shard_rows`` whatever the transfer set's size (CSV and
    Parquet are read in chunks). Under torchrun, rank r guards and labels shards r, r + N,
    … and rank 0 writes ``queries.parquet`` and ``meta.json`` once every shard is in.
    """
    here, target = distributed.world(), distributed.shard_folder(folder)
    guard = TransferGuard(spec.data, schema=teacher.schema, seed=spec.run.seed)
    names, reports = [], []
    with progress.task("label: teacher on transfer set", _count_records(spec)) as advance:
        for k, chunk in enumerate(iter_transfer(spec.data, schema=teacher.schema, seed=spec.run.seed,
                                                rows=spec.run.shard_rows)):
            names.append(f"part-{k:05d}.parquet")
            advance(len(chunk))  # records read; the other ranks label theirs at the same pace
            if not here.owns(k):
                continue
            keep, report = guard.check(chunk, first_row=int(chunk.ids[0]))
            reports.append(report)
            chunk = chunk.subset(keep)
            logits = (np.asarray(teacher.logits(chunk.X), dtype=np.float32) if len(chunk)
                      else np.zeros((0, teacher.schema.n_classes), dtype=np.float32))
            write_logit_table(target / names[-1], ids=chunk.ids, logits=logits)
            failpoint(f"label/{names[-1]}")
    reports = [r for rank_reports in distributed.gather(reports) for r in rank_reports]
    distributed.barrier()  # every rank's shards are written
    if not here.is_main:
        return {}
    leaks = merge_reports(reports)
    _log_leaks(spec, leaks)
    ids = read_shard_ids(folder, names)
    write_queries(folder, ids=ids, answered=np.ones(len(ids), dtype=bool))
    return _write_meta(spec, folder, teacher=teacher, inputs=inputs, leaks=leaks, shards=names,
                       n_records=len(ids), n_queries=len(ids))


def _count_records(spec: Spec) -> int | None:
    """Transfer records, for the progress bar's total: cheap for every format (None if unknown)."""
    cfg = spec.data
    if cfg.is_table():  # one table (or a real built-in) cut into the roles: known only once it is cut
        return None
    if cfg.builtin is not None:
        return cfg.split_sizes().transfer
    path, fmt = Path(cfg.transfer), cfg.resolved_format()
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
        if fmt == "csv":
            with path.open("rb") as handle:
                return max(sum(1 for _ in handle) - 1, 0)  # minus the header; a quoted newline over-counts
    except (OSError, ValueError):
        return None
    return None


def _log_leaks(spec: Spec, leaks) -> None:
    if leaks.transfer_rows.size:
        progress.log(f"[yellow]leak guard ({spec.data.effective_leak_policy()}): {leaks.summary()}[/yellow]")


def _write_meta(spec: Spec, folder: Path, *, teacher, inputs: dict, leaks, shards: list[str], n_records: int,
                n_queries: int, synthetic: dict | None = None) -> dict:
    """``meta.json`` of released logits; returns the stage's manifest fields.

    ``synthetic``: the generator's record when the transfer set is DP synthetic rows
    (``synthetic_inputs.npy`` beside the shards); it is then the stage's ``transfer_set``.
    """
    extra = {"transfer_set": {"source": "synthetic", **synthetic}} if synthetic is not None else {}
    atomic_write_json(folder / "meta.json", {
        "temperature": 1.0, "kind": "logits", "n_records": n_records, "n_queries": n_queries,
        "queries": QUERIES, "softlabels": spec.section_dict("softlabels"), "transfer": spec.section_dict("transfer"),
        "n_classes": teacher.schema.n_classes,
        "teacher_sha256": inputs["teacher/model.safetensors"], "transfer_sha256": inputs["data.transfer"],
        "schema": teacher.schema.to_dict(), "shards": shards, "leak_guard": leaks.to_dict(),
        "leak_policy": spec.data.effective_leak_policy(), **extra,
    })
    return {"n_records": n_records, "n_queries": n_queries, "leak_guard": _leak_record(spec, leaks), **extra}


def _synthetic_transfer(spec: Spec, folder: Path, *, schema):
    """DP synthetic transfer inputs fitted on the members: (Split, empty LeakReport, generator record).

    The leak guard has already dropped every synthetic row that copies a member or a
    nonmember (counted in the record), so the report of what remains is empty. The rows
    are kept as ``synthetic_inputs.npy``: the distill stage reads them instead of the
    transfer role.
    """
    from distillguard.data import load_members
    from distillguard.data.leakguard import TABULAR_METHOD, LeakReport
    from distillguard.data.synthetic_transfer import resolved_delta, synthetic_transfer
    from distillguard.data.types import Split

    cfg, seed = spec.transfer.synthetic, spec.run.seed
    _, members = load_members(spec.data, seed=seed)
    nonmembers = load_role(spec.data, "nonmembers", schema=schema, seed=seed)
    with progress.task(f"label: DP synthetic transfer set ({cfg.mechanism}, ε = {cfg.epsilon:g})", None):
        out = synthetic_transfer(members.X, members.y, schema=schema, cfg=cfg, delta=resolved_delta(cfg, len(members)),
                                 private={"members": members.X, "nonmembers": nonmembers.X},
                                 leak_threshold=spec.data.leak_threshold, seed=derive_seed(seed, "synthetic-transfer"))
    np.save(folder / SYNTHETIC_INPUTS, out.X, allow_pickle=False)
    record = out.record
    progress.log(f"label: {record['rows']} synthetic rows ({record['mechanism']}, ε = {record['epsilon']:g}, "
                 f"δ = {record['delta']:.3g}); the leak guard dropped {record['dropped_copies']} of {record['drawn']} drawn")
    leaks = LeakReport([], [], spec.data.leak_threshold, TABULAR_METHOD)
    return Split(X=out.X, y=None, ids=np.arange(len(out.X), dtype=np.int64)), leaks, record


def _leak_record(spec: Spec, leaks) -> dict:
    return {"policy": spec.data.effective_leak_policy(), "flagged": int(leaks.transfer_rows.size),
            "dropped": int(len(leaks.transfer_rows)) if spec.data.effective_leak_policy() == "drop" else 0}


def _release(spec: Spec, teacher, transfer):
    """Transfer selection and soft-label knobs (``[transfer]``, ``[softlabels]``) on the teacher's logits.

    Unlike the default path, which labels shard by shard, this holds all (n, C) logits at
    once: low-entropy selection ranks the whole set. A streamed top-fraction would lift it.
    """
    from distillguard.data import load_members
    from distillguard.train.release import release

    rows = spec.run.shard_rows
    logits = np.concatenate([np.asarray(teacher.logits(transfer.X[i:i + rows]), dtype=np.float32)
                             for i in range(0, len(transfer), rows)]) if len(transfer) else np.zeros((0, 0))
    private_X = load_members(spec.data, seed=spec.run.seed)[1].X if spec.transfer.select == "far_from_private" else None
    return release(logits, transfer_X=transfer.X, private_X=private_X, softlabels=spec.softlabels,
                   transfer=spec.transfer, seed=spec.run.seed, noise_seed=derive_seed(spec.run.seed, "softlabels"))


def _write_pate_labels(spec: Spec, folder: Path, *, teacher, transfer, inputs: dict, leaks) -> dict:
    """PATE: noisy votes of the ensemble on every kept transfer row; only answered ones are released.

    ``queries.parquet`` lists every query and whether it was answered (the audit's
    shadows replay the same queries); the shards hold the answered rows' labels.
    """
    from distillguard.data import load_members
    from distillguard.privacy.aggregation import aggregate, vote_counts
    from distillguard.privacy.pate_record import pate_privacy_record
    from distillguard.train.pate import ensemble_votes

    cfg, schema = spec.privacy, teacher.schema
    n_members = len(load_members(spec.data, seed=spec.run.seed)[1])
    votes = vote_counts(ensemble_votes(teacher, transfer.X), schema.n_classes)  # (n, C)
    labels, answered = aggregate(votes, sigma=cfg.sigma, threshold=cfg.threshold, sigma_threshold=cfg.sigma_threshold,
                                 rng=np.random.default_rng(derive_seed(spec.run.seed, "pate", "noise")))
    if not answered.any():
        raise ConfigError(f"[privacy].threshold = {cfg.threshold}: Confident-GNMax answered none of the {len(votes)} "
                          f"queries of {cfg.teachers} teachers; lower the threshold or sigma_threshold")
    privacy = pate_privacy_record(votes, answered, teachers=cfg.teachers, sigma=cfg.sigma, threshold=cfg.threshold,
                                  sigma_threshold=cfg.sigma_threshold, delta=cfg.resolved_delta(n_members),
                                  data_dependent=bool(cfg.data_dependent))
    write_queries(folder, ids=transfer.ids, answered=answered)
    shards = write_label_shards(folder, ids=transfer.ids[answered], labels=labels[answered],
                                shard_rows=spec.run.shard_rows)
    atomic_write_json(folder / "meta.json", {
        "kind": "labels", "aggregator": privacy["aggregator"], "n_records": int(answered.sum()),
        "n_queries": len(transfer), "n_classes": schema.n_classes, "teacher_sha256": inputs["teacher/model.safetensors"],
        "transfer_sha256": inputs["data.transfer"], "schema": schema.to_dict(), "shards": shards,
        "queries": QUERIES, "privacy": privacy, "leak_guard": leaks.to_dict(), "leak_policy": spec.data.effective_leak_policy(),
    })
    progress.log(f"label: PATE answered {privacy['answered']}/{privacy['queries']} queries, "
                 f"ε = {privacy['epsilon']:.3g} at δ = {privacy['delta']:.3g} (data-independent)")
    return {"n_records": int(answered.sum()), "privacy": privacy, "leak_guard": _leak_record(spec, leaks)}
