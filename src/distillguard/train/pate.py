"""PATE: teachers on disjoint partitions, noisy aggregation of their votes, RDP accounting.

Papernot et al. 2017 ("Semi-supervised knowledge transfer for deep learning from
private training data") train n teachers on disjoint partitions of the private data;
a student learns only from their noisily aggregated votes on public inputs. Papernot
et al. 2018 ("Scalable private learning with PATE", ICLR) replace Laplace noise by
Gaussian noise (GNMax) and add Confident-GNMax, which answers only queries on which the
teachers agree, and analyse both with Rényi DP (Mironov 2017).

One record lives in exactly one partition, so changing it changes one teacher's vote:
two vote counts move by 1 each (L2 sensitivity √2), and the top count moves by at most 1.

Everything here except the teacher training (:func:`train_teacher_ensemble`) is pure numpy maths. The
data-independent bound (:func:`pate_epsilon`) is a DP guarantee; the data-dependent one
(:func:`data_dependent_epsilon`) depends on the private votes, so the ε it reports is not
itself private (Papernot et al. 2018 release a smooth-sensitivity-noised version; that
step is not implemented here).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.special
import scipy.stats
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

#: RDP orders searched by default: 1 + a log grid over (1e-3, 1e5), dense enough that the
#: grid minimum is within ~1e-5 (relative) of the continuous one for smooth curves.
DEFAULT_ALPHAS = 1.0 + np.geomspace(1e-3, 1e5, 4000)


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


# --------------------------------------------------------------------------- aggregation


def vote_counts(predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """Histogram of teacher votes per query.

    Args:
        predictions: (T, n) int class predictions of T teachers on n queries.

    Returns:
        (n, C) int64 counts; each row sums to T.
    """
    predictions = np.asarray(predictions)
    if predictions.ndim != 2:
        raise ValueError(f"predictions must be (teachers, queries); got shape {predictions.shape}")
    if predictions.size and (predictions.min() < 0 or predictions.max() >= n_classes):
        raise ValueError(f"predictions must be class indices in [0, {n_classes}); "
                         f"got values in [{predictions.min()}, {predictions.max()}]")
    n = predictions.shape[1]
    flat = (np.arange(n)[None, :] * n_classes + predictions).ravel()  # (T·n,) cell of (query, class)
    return np.bincount(flat, minlength=n * n_classes).reshape(n, n_classes).astype(np.int64)


def plurality(votes: np.ndarray) -> np.ndarray:
    """(n,) noiseless winner of each (n, C) vote row; ties go to the lowest class index."""
    return np.asarray(votes).argmax(axis=1)


def gnmax(votes: np.ndarray, *, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """GNMax aggregator (Papernot et al. 2018, Sec. 4.1): argmax_j {n_j + N(0, σ²)}.

    Args:
        votes: (n, C) vote counts.
        sigma: noise standard deviation; 0 gives :func:`plurality` (no privacy).

    Returns:
        (n,) int64 labels. Exact ties after noise (probability 0 for σ > 0) go to the
        lowest class index, as in :func:`plurality`.
    """
    votes = np.asarray(votes, dtype=np.float64)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0; got {sigma}")
    noisy = votes + rng.normal(0.0, sigma, size=votes.shape) if sigma > 0 else votes  # (n, C)
    return noisy.argmax(axis=1).astype(np.int64)


def confident_gnmax(votes: np.ndarray, *, threshold: float, sigma1: float, sigma2: float,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Confident-GNMax (Papernot et al. 2018, Alg. 1).

    A query is answered when max_j n_j + N(0, σ1²) ≥ ``threshold``; an answered query
    gets the GNMax label with noise σ2. Threshold noise is drawn for every query first,
    then label noise for the answered ones.

    Args:
        votes: (n, C) vote counts.

    Returns:
        labels: (n,) int64, -1 where unanswered; answered: (n,) bool.
    """
    votes = np.asarray(votes)
    if sigma1 < 0:
        raise ValueError(f"sigma1 must be >= 0; got {sigma1}")
    top = votes.max(axis=1).astype(np.float64)  # (n,)
    noisy_top = top + rng.normal(0.0, sigma1, size=top.shape) if sigma1 > 0 else top
    answered = noisy_top >= threshold
    labels = np.full(len(votes), -1, dtype=np.int64)
    labels[answered] = gnmax(votes[answered], sigma=sigma2, rng=rng)
    return labels, answered


# --------------------------------------------------------------------------- accounting


def _check_alphas(alpha: np.ndarray) -> np.ndarray:
    alpha = np.asarray(alpha, dtype=np.float64)
    if np.any(alpha <= 1):
        raise ValueError(f"RDP orders must be > 1; got min {alpha.min()}")
    return alpha


def gnmax_rdp(alpha: np.ndarray, *, sigma: float) -> np.ndarray:
    """Data-independent RDP of one GNMax answer: ε(α) = α / σ² (Papernot et al. 2018, Prop. 8).

    It is the Gaussian mechanism's α·Δ²/(2σ²) (Mironov 2017, Prop. 7) with L2
    sensitivity Δ = √2 of the vote histogram.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0 for a finite RDP bound; got {sigma}")
    return _check_alphas(alpha) / sigma**2


def threshold_rdp(alpha: np.ndarray, *, sigma1: float) -> np.ndarray:
    """Data-independent RDP of one Confident-GNMax threshold test: α / (2σ1²).

    The test releases max_j n_j + N(0, σ1²); the top count has sensitivity 1, so this
    is the Gaussian mechanism with Δ = 1, i.e. Prop. 8 of Papernot et al. 2018 at
    σ1·√2 (their reference code, ``compute_rdp_data_independent_threshold``). It is paid
    on every query, answered or not.
    """
    if sigma1 <= 0:
        raise ValueError(f"sigma1 must be > 0 for a finite RDP bound; got {sigma1}")
    return _check_alphas(alpha) / (2 * sigma1**2)


def rdp_to_dp(alphas: np.ndarray, rdp: np.ndarray, *, delta: float) -> tuple[float, float]:
    """(ε, best α) with ε = min_α rdp(α) + log(1/δ) / (α − 1) (Mironov 2017, Prop. 3).

    The classic conversion, as in Papernot et al. 2018; the improved one of Balle et al.
    2020 (used by Opacus' RDP accountant) is slightly tighter, so ε here is an upper bound
    on what Opacus would report for the same curve.
    """
    alphas, rdp = _check_alphas(alphas), np.asarray(rdp, dtype=np.float64)
    if alphas.shape != rdp.shape:
        raise ValueError(f"alphas and rdp must have one shape; got {alphas.shape} and {rdp.shape}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1); got {delta}")
    eps = rdp + math.log(1 / delta) / (alphas - 1)  # (K,)
    best = int(np.argmin(eps))
    return float(eps[best]), float(alphas[best])


def pate_epsilon(*, answered: int, queries: int, sigma: float, sigma1: float | None, delta: float,
                 alphas: np.ndarray | None = None) -> dict:
    """Data-independent (ε, δ) of a PATE labelling run.

    RDP composes additively (Mironov 2017, Prop. 1): ``answered`` GNMax answers cost
    answered·α/σ², and with Confident-GNMax (``sigma1`` set) the threshold test adds
    queries·α/(2σ1²). Then :func:`rdp_to_dp`.

    Args:
        answered: labels released (every query for plain GNMax).
        queries: queries asked (= answered when ``sigma1`` is None).
        sigma: GNMax noise σ (σ2 of Confident-GNMax).
        sigma1: threshold noise, or None for plain GNMax.
        alphas: RDP orders to search; default :data:`DEFAULT_ALPHAS`.

    Returns:
        {"epsilon", "delta", "best_alpha", "answered", "queries", "sigma", "sigma1",
        "analysis": "data-independent"}.
    """
    if not 0 <= answered <= queries:
        raise ValueError(f"need 0 <= answered <= queries; got answered={answered}, queries={queries}")
    if sigma1 is None and answered != queries:
        raise ValueError(f"plain GNMax answers every query; got answered={answered} of queries={queries} "
                         "(set sigma1 for Confident-GNMax)")
    alphas = DEFAULT_ALPHAS if alphas is None else _check_alphas(alphas)
    rdp = answered * gnmax_rdp(alphas, sigma=sigma)
    if sigma1 is not None:
        rdp = rdp + queries * threshold_rdp(alphas, sigma1=sigma1)
    epsilon, best_alpha = rdp_to_dp(alphas, rdp, delta=delta) if queries else (0.0, float("nan"))
    return {"epsilon": epsilon, "delta": delta, "best_alpha": best_alpha, "answered": int(answered),
            "queries": int(queries), "sigma": sigma, "sigma1": sigma1, "analysis": "data-independent"}


def _log1mexp(x: float) -> float:
    """log(1 − eˣ) for x ≤ 0, stable near 0 and for very negative x."""
    if x >= 0:
        return -math.inf
    return math.log(-math.expm1(x)) if x > -math.log(2) else math.log1p(-math.exp(x))


def gnmax_logq(votes: np.ndarray, *, sigma: float) -> float:
    """Upper bound on log Pr[GNMax ≠ plurality] for one (C,) vote row (Papernot et al. 2018, Prop. 7).

    Union bound over the runners-up j: Pr[n_j + Z_j ≥ n_* + Z_*] = Φ̄((n_* − n_j) / (√2 σ)),
    capped at (C − 1)/C.
    """
    votes = np.asarray(votes, dtype=np.float64)
    top = int(votes.argmax())
    gaps = np.delete(votes[top] - votes, top)  # (C-1,)
    logq = float(scipy.special.logsumexp(scipy.stats.norm.logsf(gaps, scale=math.sqrt(2) * sigma)))
    return min(logq, math.log(1 - 1 / len(votes)))


def gnmax_rdp_data_dependent(alpha: np.ndarray, *, logq: float, sigma: float) -> np.ndarray:
    """Data-dependent RDP of one GNMax answer (Papernot et al. 2018, Thm. 6 with Prop. 10).

    With q = Pr[outcome ≠ plurality] and the higher orders μ2 = σ·sqrt(log(1/q)),
    μ1 = μ2 + 1 (at which GNMax is (μi, εi = μi/σ²)-RDP), for α < μ1:

        ε(α) ≤ 1/(α−1) · log((1−q)·A^(α−1) + q·B^(α−1)),
        A = (1−q) / (1 − (q·e^ε2)^((μ2−1)/μ2)),   B = e^ε1 / q^(1/(μ1−1)),

    when the theorem's conditions hold; otherwise, and wherever it is larger, the
    data-independent α/σ² is kept.
    """
    alpha = _check_alphas(alpha)
    bound = gnmax_rdp(alpha, sigma=sigma)
    if np.isneginf(logq):
        return np.zeros_like(alpha)  # the answer is certain: no privacy loss
    mu2 = sigma * math.sqrt(-logq)
    mu1 = mu2 + 1
    eps1, eps2 = mu1 / sigma**2, mu2 / sigma**2
    applies = alpha < mu1
    if mu2 <= 1 or not applies.any():
        return bound
    q_small_enough = logq <= (mu2 - 1) * eps2 - mu2 * (math.log(mu1 / (mu1 - 1)) + math.log(mu2 / (mu2 - 1)))
    if not (q_small_enough and -logq > eps2):
        return bound
    log1q = _log1mexp(logq)
    log_a = (alpha - 1) * (log1q - _log1mexp((logq + eps2) * (1 - 1 / mu2)))
    log_b = (alpha - 1) * (eps1 - logq / (mu1 - 1))
    dependent = np.logaddexp(log1q + log_a, logq + log_b) / (alpha - 1)
    return np.where(applies, np.minimum(bound, dependent), bound)


def data_dependent_rdp(votes: np.ndarray, *, sigma: float, alphas: np.ndarray) -> np.ndarray:
    """(K,) data-dependent RDP curve of GNMax answers to the (n, C) ``votes``: the sum over rows."""
    votes, alphas = np.asarray(votes), _check_alphas(alphas)
    rdp = np.zeros_like(alphas)
    if len(votes):
        rows, counts = np.unique(votes, axis=0, return_counts=True)  # vote rows repeat a lot
        for row, count in zip(rows, counts):
            rdp += count * gnmax_rdp_data_dependent(alphas, logq=gnmax_logq(row, sigma=sigma), sigma=sigma)
    return rdp


def data_dependent_epsilon(votes: np.ndarray, *, sigma: float, delta: float,
                           alphas: np.ndarray | None = None) -> dict:
    """Data-dependent (ε, δ) of GNMax answers to the (n, C) ``votes`` (Papernot et al. 2018, Sec. 3).

    Sums :func:`gnmax_rdp_data_dependent` over the answered queries; pass only the rows
    that were answered. Confident-GNMax's threshold cost is not included (add
    ``queries·α/(2σ1²)`` from :func:`threshold_rdp` if needed).

    The result depends on the private votes and is **not itself differentially
    private**: report it as an analysis, not a guarantee.

    Returns:
        {"epsilon", "delta", "best_alpha", "answered", "sigma",
        "analysis": "data-dependent (not itself private)"}.
    """
    votes = np.asarray(votes)
    alphas = DEFAULT_ALPHAS if alphas is None else _check_alphas(alphas)
    rdp = data_dependent_rdp(votes, sigma=sigma, alphas=alphas)
    epsilon, best_alpha = rdp_to_dp(alphas, rdp, delta=delta) if len(votes) else (0.0, float("nan"))
    return {"epsilon": epsilon, "delta": delta, "best_alpha": best_alpha, "answered": int(len(votes)),
            "sigma": sigma, "analysis": "data-dependent (not itself private)"}


def aggregate(votes: np.ndarray, *, sigma: float, threshold: float | None, sigma_threshold: float | None,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """GNMax, or Confident-GNMax when ``threshold`` is set: (labels (n,), answered (n,) bool).

    Unanswered queries get label -1.
    """
    if threshold is None:
        return gnmax(votes, sigma=sigma, rng=rng), np.ones(len(votes), dtype=bool)
    return confident_gnmax(votes, threshold=threshold, sigma1=sigma_threshold, sigma2=sigma, rng=rng)


def pate_privacy_record(votes: np.ndarray, answered: np.ndarray, *, teachers: int, sigma: float,
                        threshold: float | None, sigma_threshold: float | None, delta: float,
                        data_dependent: bool) -> dict:
    """The report's privacy block of one PATE labelling run.

    ``epsilon`` is the data-independent guarantee (:func:`pate_epsilon`), recomputable
    from ``answered``, ``queries``, ``sigma``, ``sigma_threshold`` and ``delta`` alone.
    With ``data_dependent`` the record adds the Papernot et al. (2018) analysis of the
    actual votes (plus the data-independent threshold cost), which is **not** a DP
    guarantee by itself (it depends on the private votes) and is labelled so.

    Args:
        votes: (queries, C) vote counts of every query; answered: (queries,) bool.
    """
    votes, answered = np.asarray(votes), np.asarray(answered, dtype=bool)
    bound = pate_epsilon(answered=int(answered.sum()), queries=len(votes), sigma=sigma, sigma1=sigma_threshold,
                         delta=delta)
    record = {"mechanism": "pate", "epsilon": bound["epsilon"], "delta": delta, "analysis": bound["analysis"],
              "best_alpha": bound["best_alpha"], "teachers": int(teachers), "sigma": sigma,
              "threshold": threshold, "sigma_threshold": sigma_threshold, "queries": bound["queries"],
              "answered": bound["answered"], "aggregator": "confident-gnmax" if threshold is not None else "gnmax",
              "accountant": "rdp (data-independent, Mironov 2017 conversion)", "data_dependent": None}
    if data_dependent:
        rdp = data_dependent_rdp(votes[answered], sigma=sigma, alphas=DEFAULT_ALPHAS)
        if sigma_threshold is not None:
            rdp = rdp + len(votes) * threshold_rdp(DEFAULT_ALPHAS, sigma1=sigma_threshold)
        eps, alpha = rdp_to_dp(DEFAULT_ALPHAS, rdp, delta=delta) if len(votes) else (0.0, float("nan"))
        record["data_dependent"] = {
            "epsilon": eps, "best_alpha": alpha, "analysis": "data-dependent (Papernot et al. 2018)",
            "note": "depends on the private votes, so it is not itself differentially private; "
                    "the guarantee is 'epsilon' above"}
    return record


def recompute_pate_epsilon(record: dict) -> float:
    """The data-independent ε of a :func:`pate_privacy_record`, from its counts and noise alone."""
    return pate_epsilon(answered=int(record["answered"]), queries=int(record["queries"]), sigma=float(record["sigma"]),
                        sigma1=record.get("sigma_threshold"), delta=float(record["delta"]))["epsilon"]


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
