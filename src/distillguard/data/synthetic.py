"""DP synthetic transfer data: MST (McKenna, Miklau & Sheldon 2021) fitted on a private table.

When no public data exist, the transfer set the teacher labels is sampled from a
differentially private generator fitted on the teacher's own training records. MST:

1. measure every 1-way marginal with Gaussian noise (a third of the zCDP budget ρ);
2. merge the values whose noisy count is below 3σ (:func:`~distillguard.data.synthetic_domain.compression`);
3. choose a maximum spanning tree of attribute pairs with the exponential mechanism, each
   pair scored by the L1 gap between its true 2-way marginal and the 1-way estimate
   (a third of ρ; the score has sensitivity 1);
4. measure the tree's 2-way marginals with Gaussian noise (the last third);
5. fit a graphical model to all noisy measurements with Private-PGM (the ``mbi`` package,
   mirror descent) and sample rows from it.

ρ comes from (ε, δ) by the conversion of :mod:`distillguard.privacy.zcdp`; every noise
scale used is recorded, so :func:`spent_rho` recomputes what was spent. Neighbouring
tables differ by one added or removed record, whose label is one of its attributes: the
label is kept in the generator so the synthetic rows follow each class's feature
structure (the teacher, not the generator, labels them). The numeric domain is a fixed
grid (:mod:`distillguard.data.synthetic_domain`): nothing about bins is fitted on the data
outside the budget.

``mbi`` (and JAX under it) is an optional extra, imported only here, when a generator is
fitted: ``pip install "distillguard[synth]"``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from distillguard.data.synthetic_domain import Attribute, Compression, compression, decode, encode, expand
from distillguard.errors import ConfigError
from distillguard.privacy.zcdp import exponential_rho, gaussian_rho, zcdp_epsilon, zcdp_rho

MAX_ATTRIBUTES = 64  # pairs scored for the tree grow as d²; wider tables are out of MST's reach here
ESTIMATION_ITERS = 1000  # mirror-descent steps of the final fit (Private-PGM's default)


@dataclass(frozen=True)
class MSTGenerator:
    """A fitted MST generator: the graphical model, the merged domain and what it spent.

    Attributes:
        sigmas: the noise σ of every Gaussian measurement (sensitivity 1 each).
        em_epsilons: the ε of every exponential-mechanism draw.
        tree: the attribute pairs of the spanning tree (names, not values).
    """

    model: object
    attrs: list[Attribute]
    compressions: dict[str, Compression]
    n_features: int
    epsilon: float
    delta: float
    rho: float
    sigmas: list[float] = field(default_factory=list)
    em_epsilons: list[float] = field(default_factory=list)
    tree: list[tuple[str, str]] = field(default_factory=list)

    def sample(self, rows: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, d) float32 synthetic features and the generator's (rows,) labels (post-processing)."""
        rng = np.random.default_rng(seed)
        sample = _sample(self.model, rows, seed=int(rng.integers(2 ** 31)))
        original = {a.name: expand(sample[a.name], self.compressions[a.name], rng=rng) for a in self.attrs}
        return decode(original, self.attrs, n_features=self.n_features), original["label"]

    def record(self) -> dict:
        """The accounting, for the manifest and the report (no record value)."""
        spent = spent_rho(self.sigmas, self.em_epsilons)
        return {"mechanism": "mst", "epsilon": self.epsilon, "delta": self.delta, "rho": self.rho,
                "rho_spent": spent, "epsilon_spent": zcdp_epsilon(spent, self.delta),
                "measurements": len(self.sigmas), "tree_edges": len(self.tree),
                "neighbouring": "add or remove one record", "library": "mbi (Private-PGM)"}


def spent_rho(sigmas: list[float], em_epsilons: list[float]) -> float:
    """ρ of the measurements made: Σ 1/(2σ²) over the Gaussian ones + Σ ε²/8 over the selections."""
    return sum(gaussian_rho(s) for s in sigmas) + sum(exponential_rho(e) for e in em_epsilons)


def _mbi():
    """The mbi package, with JAX in float64; a one-line error naming the extra when missing."""
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        jax.config.update("jax_enable_compilation_cache", False)  # mbi compiles many small programs
        import mbi
        from mbi import estimation
    except ImportError as exc:
        raise ConfigError('[transfer.synthetic] mechanism = "mst" needs the mbi package: '
                          'pip install "distillguard[synth]"') from exc
    return mbi, estimation


def _counts(codes: dict[str, np.ndarray], attrs: tuple[str, ...], sizes: dict[str, int]) -> np.ndarray:
    shape = tuple(sizes[a] for a in attrs)
    flat = np.ravel_multi_index(tuple(codes[a] for a in attrs), shape)
    return np.bincount(flat, minlength=math.prod(shape)).astype(np.float64)


def fit_mst(X: np.ndarray, y: np.ndarray, *, attrs: list[Attribute], epsilon: float, delta: float,
            seed: int) -> MSTGenerator:
    """Fit MST on ``(X, y)`` under (ε, δ)-DP; sampling from it is post-processing.

    Args:
        X: (n, d) the private rows' features; y: (n,) their class indices.
        attrs: the generator's attributes (:func:`~distillguard.data.synthetic_domain.table_attributes`).
        seed: every noise draw, selection and sample derives from it.
    """
    if len(attrs) > MAX_ATTRIBUTES:
        raise ConfigError(f"[transfer.synthetic]: the table has {len(attrs)} attributes (features + label); "
                          f"MST here handles at most {MAX_ATTRIBUTES}")
    mbi, estimation = _mbi()
    rng = np.random.default_rng(seed)
    rho = zcdp_rho(epsilon, delta)
    sigma = math.sqrt(3 / (2 * rho))  # each third of ρ is one unit-norm batch of measurements at this σ
    codes = encode(X, y, attrs)
    kinds = {a.name: a.kind for a in attrs}
    sizes = {a.name: a.size for a in attrs}
    names = [a.name for a in attrs]
    sigmas, em_epsilons = [], []

    # 1. every 1-way marginal, then 2. the domain merged by its noisy counts
    sigma1 = sigma * math.sqrt(len(names))
    comps: dict[str, Compression] = {}
    ccodes, csizes, log1 = {}, {}, []
    for name in names:
        noisy = _counts(codes, (name,), sizes) + rng.normal(0, sigma1, sizes[name])
        sigmas.append(sigma1)
        comps[name] = compression(noisy, kinds[name], threshold=3 * sigma1)
        ccodes[name] = comps[name].mapping[codes[name]]
        csizes[name] = comps[name].size
        merged = np.bincount(comps[name].mapping, weights=noisy, minlength=csizes[name])
        group = np.bincount(comps[name].mapping, minlength=csizes[name]).astype(np.float64)
        # a merged cell's noise has variance (group)·σ²: rescale to σ with a weighted query, as mbi's compress does
        log1.append(mbi.LinearMeasurement(merged / np.sqrt(group), (name,), stddev=sigma1,
                                          query=mbi.WeightedQuery(1 / np.sqrt(group))))
    domain = mbi.Domain(names, [csizes[n] for n in names])

    # 3. the spanning tree, one exponential-mechanism draw per edge
    tree, eps_em = _select_tree(log1, ccodes, csizes, names, rho=rho / 3, rng=rng)
    em_epsilons += [eps_em] * len(tree)

    # 4. the tree's 2-way marginals, 5. the graphical model and its sample
    log2 = []
    sigma2 = sigma * math.sqrt(max(len(tree), 1))
    for pair in tree:
        noisy = _counts(ccodes, pair, csizes) + rng.normal(0, sigma2, csizes[pair[0]] * csizes[pair[1]])
        sigmas.append(sigma2)
        log2.append(mbi.LinearMeasurement(noisy, pair, stddev=sigma2))
    model = estimation.MirrorDescent().estimate(domain, log1 + log2, iters=ESTIMATION_ITERS)
    return MSTGenerator(model, attrs, comps, X.shape[1], epsilon, delta, rho, sigmas, em_epsilons, list(tree))


def _select_tree(log1, codes, sizes, names, *, rho: float, rng: np.random.Generator):
    """MST's selection: Kruskal on noisy scores, each edge drawn by the exponential mechanism.

    A pair's score is ‖x_ab − x̂_ab‖₁, the true 2-way counts against the estimate from the
    1-way measurements (:func:`_one_way_estimates`); adding or removing a record moves it
    by at most 1. With r
    attributes there are r − 1 draws at ε₀ = √(8ρ / (r − 1)) each, ρ in all.
    """
    if len(names) < 2:
        return [], 0.0
    marginals = _one_way_estimates(log1, names)
    candidates = list(itertools.combinations(names, 2))
    scores = {}
    for a, b in candidates:
        fitted = np.outer(marginals[a], marginals[b]).ravel() / max(marginals[a].sum(), 1e-12)
        scores[a, b] = float(np.abs(_counts(codes, (a, b), sizes) - fitted).sum())
    eps_em = math.sqrt(8 * rho / (len(names) - 1))
    parent = {n: n for n in names}

    def root(n: str) -> str:
        while parent[n] != n:
            n = parent[n]
        return n

    tree = []
    for _ in range(len(names) - 1):
        open_pairs = [e for e in candidates if root(e[0]) != root(e[1])]
        q = np.array([scores[e] for e in open_pairs])
        logits = eps_em / 2 * (q - q.max())  # exp(ε₀ · score / (2 · sensitivity)), sensitivity 1
        p = np.exp(logits) / np.exp(logits).sum()
        a, b = open_pairs[int(rng.choice(len(open_pairs), p=p))]
        tree.append((a, b))
        parent[root(a)] = root(b)
    return tree, eps_em


def _one_way_estimates(log1, names) -> dict[str, np.ndarray]:
    """The fit of the 1-way measurements alone: a product of per-attribute counts.

    With only 1-way measurements the graphical model is a product of independent
    attributes, and the L2 loss splits per attribute: each marginal is the projection of
    its noisy counts (rescaled back from the weighted query) onto the non-negative vectors
    summing to the shared total, estimated as the mean of the noisy sums (unweighted: close
    to Private-PGM's fit of the same measurements, without compiling a model for it). It is
    post-processing of the noisy counts: no budget.
    """
    counts = {}
    for m, name in zip(log1, names):
        weights = np.asarray(m.query.weights) if hasattr(m.query, "weights") else 1.0
        counts[name] = np.asarray(m.noisy_measurement, dtype=np.float64) / weights
    total = max(float(np.mean([c.sum() for c in counts.values()])), 1.0)
    return {name: _simplex_projection(c, total) for name, c in counts.items()}


def _simplex_projection(v: np.ndarray, total: float) -> np.ndarray:
    """The Euclidean projection of ``v`` onto {x ≥ 0, Σx = total} (Duchi et al. 2008)."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - total
    k = np.flatnonzero(u - css / np.arange(1, len(u) + 1) > 0)[-1]
    return np.maximum(v - css[k] / (k + 1), 0.0)


def _sample(model, rows: int, *, seed: int) -> dict[str, np.ndarray]:
    """``rows`` i.i.d. rows of the fitted model (mbi samples with NumPy's global generator:
    seeded here and restored, so a run is reproducible and nothing else is disturbed)."""
    state = np.random.get_state()
    try:
        np.random.seed(seed % 2 ** 32)
        data = model.synthetic_data(rows, method="sample")
    finally:
        np.random.set_state(state)
    return {name: np.asarray(values, dtype=np.int64) for name, values in data.to_dict().items()}
