"""Leak guard: private records in the transfer set are found, independent records are not.

Both directions are tested on purpose: a guard that flags nothing and one that flags
every look-alike record are both useless, so each data family plants exact and noisy
copies among 2,000+ clean rows and requires the flagged set to be exactly the planted one.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from distillguard.data.leakguard import TABULAR_METHOD, TEXT_METHOD, LeakReport, apply_policy
from distillguard.data.leakguard_tabular import find_tabular_leaks
from distillguard.data.leakguard_text import _lsh_params, find_text_leaks
from distillguard.errors import DataLeakError

# ------------------------------------------------------------------ tabular data families


def purchase_like(rng: np.random.Generator, n: int, *, features: int = 600) -> np.ndarray:
    """Binary baskets: 100 class prototypes (20% of items), each record flips 20% of its bits."""
    prototypes = np.random.default_rng(7).random((100, features)) < 0.2
    y = rng.integers(0, 100, n)
    return (prototypes[y] ^ (rng.random((n, features)) < 0.2)).astype(np.float32)


def standard_normal(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.standard_normal((n, 600)).astype(np.float32)


def gaussian_mixture(rng: np.random.Generator, n: int) -> np.ndarray:
    """Ten clusters in ten dimensions: dense enough that neighbours are genuinely close."""
    centers = np.random.default_rng(7).normal(0.0, 3.0, (10, 10))
    return (centers[rng.integers(0, 10, n)] + rng.standard_normal((n, 10))).astype(np.float32)


def plant(draw, *, n_private: int, n_clean: int, seed: int = 0):
    """Members/nonmembers and a transfer set: clean draws, then 20 exact member copies,
    20 member copies with N(0, 1e-4) noise on every feature, 5 exact nonmember copies."""
    members = draw(np.random.default_rng([seed, 1]), n_private)
    nonmembers = draw(np.random.default_rng([seed, 2]), n_private)
    clean = draw(np.random.default_rng([seed, 3]), n_clean)
    noise = np.random.default_rng([seed, 4]).normal(0.0, 1e-4, (20, members.shape[1])).astype(np.float32)
    transfer = np.concatenate([clean, members[:20], members[20:40] + noise, nonmembers[:5]])
    return transfer, {"members": members, "nonmembers": nonmembers}


@pytest.mark.parametrize("draw, n_private, n_clean", [
    (purchase_like, 1500, 2000),
    (standard_normal, 1000, 2000),
    (gaussian_mixture, 2000, 3000),
], ids=["purchase-binary", "standard-normal", "gaussian-mixture"])
def test_tabular_finds_exact_and_noisy_copies_and_nothing_else(draw, n_private, n_clean):
    transfer, private = plant(draw, n_private=n_private, n_clean=n_clean)
    report = find_tabular_leaks(transfer, private)

    exact_rows, noisy_rows = np.arange(n_clean, n_clean + 20), np.arange(n_clean + 20, n_clean + 40)
    nonmember_rows = np.arange(n_clean + 40, n_clean + 45)
    np.testing.assert_array_equal(report.transfer_rows, np.arange(n_clean, n_clean + 45))  # no clean row flagged
    assert report.exact == ([(int(t), "members", i) for i, t in enumerate(exact_rows)]
                            + [(int(t), "nonmembers", i) for i, t in enumerate(nonmember_rows)])
    assert [(t, s, p) for t, s, p, _ in report.near] == [(int(t), "members", 20 + i) for i, t in enumerate(noisy_rows)]
    assert max(v for *_, v in report.near) < 0.1 * report.threshold  # a wide margin, not a lucky one
    assert (report.n_exact, report.n_near) == (25, 20)


@pytest.mark.parametrize("draw", [purchase_like, gaussian_mixture], ids=["purchase-binary", "gaussian-mixture"])
def test_independent_draws_of_the_same_distribution_are_not_flagged(draw):
    private = {"members": draw(np.random.default_rng(1), 500), "nonmembers": draw(np.random.default_rng(2), 500)}
    report = find_tabular_leaks(draw(np.random.default_rng(3), 2000), private)
    assert report.exact == [] and report.near == []
    assert report.summary().startswith("no overlap")


def test_exact_copies_survive_float64_round_trip_and_signed_zero():
    rng = np.random.default_rng(0)
    members = rng.standard_normal((50, 8)).astype(np.float32)
    members[3, :4] = 0.0
    copy = members[3].astype(np.float64)
    copy[:4] = -0.0
    transfer = np.concatenate([rng.standard_normal((10, 8)), copy[None]])
    report = find_tabular_leaks(transfer, {"members": members}, relative_threshold=0.0)
    assert report.exact == [(10, "members", 3)] and report.near == []


def test_a_row_copied_in_both_splits_is_listed_per_split_and_counted_once():
    members = np.eye(6, dtype=np.float32)
    private = {"members": members, "nonmembers": members[::-1].copy()}
    report = find_tabular_leaks(np.stack([members[1], np.full(6, 5.0, np.float32)]), private)
    assert report.exact == [(0, "members", 1), (0, "nonmembers", 4)]
    assert report.n_exact == 1 and report.transfer_rows.tolist() == [0]


def test_threshold_zero_reports_exact_copies_only():
    transfer, private = plant(gaussian_mixture, n_private=300, n_clean=100)
    report = find_tabular_leaks(transfer, private, relative_threshold=0.0)
    assert report.near == [] and report.n_exact == 25


def test_single_private_record_has_no_distance_scale_but_exact_copies_are_found():
    member = np.arange(5, dtype=np.float32)[None]
    report = find_tabular_leaks(np.concatenate([member, member + 1e-4]), {"members": member})
    assert report.exact == [(0, "members", 0)] and report.near == []


@pytest.mark.parametrize("transfer, private", [
    (np.zeros((0, 4)), {"members": np.ones((3, 4))}),
    (np.ones((3, 4)), {}),
    (np.ones((3, 4)), {"members": np.zeros((0, 4)), "nonmembers": np.zeros((0, 4))}),
], ids=["no-transfer", "no-splits", "empty-splits"])
def test_empty_inputs_give_an_empty_report(transfer, private):
    report = find_tabular_leaks(transfer, private)
    assert report.exact == [] and report.near == [] and report.transfer_rows.dtype == np.int64
    np.testing.assert_array_equal(apply_policy(report, policy="fail", n_transfer=len(transfer), source="t"),
                                  np.arange(len(transfer)))


def test_mismatched_feature_counts_name_both_sizes():
    with pytest.raises(ValueError, match=r"'nonmembers' has 5 features but the transfer set has 4.*same columns"):
        find_tabular_leaks(np.ones((3, 4)), {"members": np.ones((2, 4)), "nonmembers": np.ones((2, 5))})


@pytest.mark.parametrize("transfer, private, message", [
    (np.ones(4), {"members": np.ones((2, 4))}, r"transfer set must be a 2-D .* shape \(4,\)"),
    (np.ones((3, 0)), {"members": np.ones((2, 0))}, "no feature columns"),
    (np.ones((3, 4)), {"members": np.array([[1.0, 2, 3, 4], [1, np.nan, 3, 4]])}, "'members' has non-finite.*row 1"),
])
def test_bad_tabular_inputs_say_what_is_wrong(transfer, private, message):
    with pytest.raises(ValueError, match=message):
        find_tabular_leaks(transfer, private)


@pytest.mark.parametrize("kwargs", [{"relative_threshold": -0.1}, {"relative_threshold": float("nan")}, {"chunk": 0}])
def test_bad_tabular_parameters_are_rejected(kwargs):
    with pytest.raises(ValueError, match=f"The '{next(iter(kwargs))}' parameter of find_tabular_leaks"):
        find_tabular_leaks(np.ones((2, 3)), {"members": np.ones((2, 3))}, **kwargs)


def test_chunked_queries_match_one_query():
    transfer, private = plant(gaussian_mixture, n_private=300, n_clean=200)
    assert find_tabular_leaks(transfer, private, chunk=7) == find_tabular_leaks(transfer, private)


# ------------------------------------------------------------------------- text corpora

FIRST = ["james", "mary", "robert", "patricia", "john", "jennifer", "michael", "linda", "david", "elizabeth",
         "william", "barbara", "richard", "susan", "joseph", "jessica", "carlos", "aisha", "wei", "yuki", "omar",
         "fatima", "ivan", "olga"]
LAST = ["smith", "johnson", "williams", "brown", "jones", "garcia", "miller", "davis", "rodriguez", "martinez",
        "lopez", "wilson", "anderson", "taylor", "moore", "jackson", "lee", "nguyen", "kim", "patel"]
CITY = ["springfield", "riverside", "franklin", "greenville", "bristol", "clinton", "fairview", "salem", "madison"]
JOB = ["nurse", "teacher", "plumber", "accountant", "engineer", "chef", "pilot", "lawyer", "designer"]
TEMPLATE = ("My name is {first} {last} and my email is {email}. "
            "I live at {number} {street} Street in {city} and moved there in {year}. "
            "You can reach me on {phone} most evenings after work. "
            "My account number is {account} and my date of birth is {birth}. "
            "I work as a {job} and my manager is {first2} {last2}.")


def pii_document(rng: random.Random) -> str:
    """One ~56-word record of the template family: same sentences, different personal values."""
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return TEMPLATE.format(
        first=first.title(), last=last.title(), email=f"{first}.{last}{rng.randint(1, 99)}@example.com",
        number=rng.randint(1, 9999), street=rng.choice(LAST).title(), city=rng.choice(CITY).title(),
        year=rng.randint(1970, 2023), phone=f"555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}",
        account=rng.randint(10**7, 10**8 - 1),
        birth=f"{rng.randint(1, 28)}/{rng.randint(1, 12)}/{rng.randint(1940, 2005)}",
        job=rng.choice(JOB), first2=rng.choice(FIRST).title(), last2=rng.choice(LAST).title())


def lightly_edit(rng: random.Random, text: str, *, changed: int, inserted: int) -> str:
    words = text.split()
    for i in rng.sample(range(len(words)), changed):
        words[i] = rng.choice(["blue", "quickly", "however", "seven", "window", "garden"])
    for _ in range(inserted):
        words.insert(rng.randrange(len(words) + 1), rng.choice(["really", "also", "then", "indeed"]))
    return " ".join(words)


def text_corpora(*, n_private: int = 300, n_clean: int = 300):
    rng = random.Random(0)
    members = [pii_document(rng) for _ in range(n_private)]
    nonmembers = [pii_document(rng) for _ in range(n_private)]
    clean = [pii_document(rng) for _ in range(n_clean)]
    return rng, clean, {"members": members, "nonmembers": nonmembers}


def test_text_finds_verbatim_and_lightly_edited_copies_and_nothing_else():
    rng, clean, private = text_corpora()
    members = private["members"]
    verbatim = ["  " + members[0].upper().replace(" ", "\n  "), members[1]]  # case and whitespace do not matter
    edited = ([lightly_edit(rng, members[i], changed=2, inserted=1) for i in range(10, 20)]
              + [lightly_edit(rng, members[i], changed=3, inserted=2) for i in range(20, 25)]
              + [lightly_edit(rng, private["nonmembers"][7], changed=1, inserted=1)])
    n = len(clean)
    report = find_text_leaks(clean + verbatim + edited, private)

    assert report.method == TEXT_METHOD
    assert report.exact == [(n, "members", 0), (n + 1, "members", 1)]
    expected_near = [(n + 2 + k, "members", i) for k, i in enumerate(range(10, 25))] + [(n + 17, "nonmembers", 7)]
    assert [(t, s, p) for t, s, p, _ in report.near] == expected_near
    assert all(report.threshold <= v < 1.0 for *_, v in report.near)
    np.testing.assert_array_equal(report.transfer_rows, np.arange(n, n + 18))  # no template look-alike flagged


def test_text_template_family_with_different_values_is_not_flagged():
    _, clean, private = text_corpora(n_private=300, n_clean=500)
    report = find_text_leaks(clean, private)
    assert report.exact == [] and report.near == []


def test_text_empty_documents_are_never_a_leak_and_non_strings_are_rejected():
    report = find_text_leaks(["", "  ", "short"], {"members": ["", "short"]})
    assert report.exact == [(2, "members", 1)] and report.near == []
    assert find_text_leaks([], {"members": ["a document"]}).transfer_rows.size == 0
    assert find_text_leaks(["a document"], {}).transfer_rows.size == 0
    with pytest.raises(ValueError, match="transfer document 1 must be a string; got int"):
        find_text_leaks(["fine", 3], {"members": ["fine"]})
    with pytest.raises(ValueError, match="The 'jaccard_threshold' parameter of find_text_leaks"):
        find_text_leaks(["a"], {"members": ["a"]}, jaccard_threshold=0.0)


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9])
def test_lsh_bands_make_a_pair_at_the_threshold_a_candidate_with_probability_95(threshold):
    bands, rows = _lsh_params(threshold, 128)
    assert bands * rows <= 128
    assert 1 - (1 - threshold**rows) ** bands >= 0.95
    assert 1 - (1 - threshold ** (rows + 1)) ** (128 // (rows + 1)) < 0.95  # and no sharper bands would do


# ------------------------------------------------------------------------ report, policy


def example_report() -> LeakReport:
    exact = [(3, "members", 0), (17, "members", 5), (17, "nonmembers", 2)]
    near = [(42, "members", 9, 0.004), (50, "nonmembers", 1, 0.01), (61, "members", 3, 0.002), (70, "members", 4, 0.0)]
    return LeakReport(exact=exact, near=near, threshold=0.02, method=TABULAR_METHOD)


def test_summary_is_one_line_with_counts_and_first_rows():
    line = example_report().summary(limit=3)
    assert line == ("transfer rows 3, 17, 42… overlap the private data: 2 exact copies, 4 near-duplicates "
                    "(relative distance ≤ 0.02)")
    assert LeakReport([(8, "members", 1)], [], 0.7, TEXT_METHOD).summary() == (
        "transfer row 8 overlaps the private data: 1 exact copy, 0 near-duplicates (Jaccard similarity ≥ 0.7)")


def test_to_dict_is_json_and_carries_every_finding():
    value = json.loads(json.dumps(example_report().to_dict()))
    assert value["n_flagged"] == 6 and value["n_exact"] == 2 and value["n_near"] == 4
    assert value["transfer_rows"] == [3, 17, 42, 50, 61, 70]
    assert value["near"][0] == {"transfer_row": 42, "split": "members", "private_row": 9, "relative_distance": 0.004}
    assert value["criterion"] == "relative distance ≤ 0.02" and value["method"] == TABULAR_METHOD


def test_policy_fail_raises_a_leak_error_naming_source_counts_rows_and_fix():
    with pytest.raises(DataLeakError) as caught:
        apply_policy(example_report(), policy="fail", n_transfer=100, source="data/transfer.csv")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("data/transfer.csv: transfer rows 3, 17, 42, 50, 61…")
    assert "overlap" in message and "2 exact copies, 4 near-duplicates" in message and "leak" in message
    assert 'leak_policy = "drop"' in message and "Remove these rows from data/transfer.csv" in message


def test_policy_drop_removes_exactly_the_flagged_rows_and_warn_keeps_all():
    kept = apply_policy(example_report(), policy="drop", n_transfer=100, source="transfer")
    np.testing.assert_array_equal(kept, np.setdiff1d(np.arange(100), [3, 17, 42, 50, 61, 70]))
    assert kept.dtype == np.int64
    np.testing.assert_array_equal(apply_policy(example_report(), policy="warn", n_transfer=100, source="transfer"),
                                  np.arange(100))


def test_policy_fail_passes_a_clean_report():
    clean = LeakReport([], [], 0.02, TABULAR_METHOD)
    np.testing.assert_array_equal(apply_policy(clean, policy="fail", n_transfer=4, source="transfer"), np.arange(4))


def test_policy_end_to_end_drop_leaves_a_clean_transfer_set():
    transfer, private = plant(gaussian_mixture, n_private=400, n_clean=300)
    keep = apply_policy(find_tabular_leaks(transfer, private), policy="drop", n_transfer=len(transfer), source="t")
    np.testing.assert_array_equal(keep, np.arange(300))
    assert find_tabular_leaks(transfer[keep], private).transfer_rows.size == 0


@pytest.mark.parametrize("kwargs, message", [
    ({"policy": "ignore", "n_transfer": 100}, r"The 'policy' parameter of apply_policy must be one of 'fail', 'drop', "
                                               r"'warn'. Got 'ignore' instead."),
    ({"policy": "drop", "n_transfer": 50}, "flags transfer row 70 but n_transfer is 50"),
])
def test_policy_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        apply_policy(example_report(), source="transfer", **kwargs)
