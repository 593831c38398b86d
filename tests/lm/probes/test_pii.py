"""PII completion maths: normalization, whole-value matching, prompts from templates."""

from __future__ import annotations

import pytest

from distillguard.lm.probes.pii import contains_value, exact_match_rate, normalize, pii_prompts


def test_normalize_casefolds_nfkc_and_collapses_whitespace():
    assert normalize("  Alice\t SMITH \n") == "alice smith"
    assert normalize("ｅｍａｉｌ") == "email"  # full-width letters (NFKC)


@pytest.mark.parametrize(("completion", "truth", "expected"), [
    (" alice.smith@example.org.", "alice.smith@example.org", True),   # trailing period is punctuation
    (" Alice.Smith@Example.org and more", "alice.smith@example.org", True),
    (" jimbob@x.org", "bob@x.org", False),                             # glued to a letter
    (" 12345", "1234", False),                                         # glued to a digit
    (" call 555 0100 now", "555  0100", True),                         # whitespace collapsed
    (" bob@x.or", "bob@x.org", False),                                 # truncated
    ("bob@x.org bob@x.org", "bob@x.org", True),
    ("xbob@x.org bob@x.org", "bob@x.org", True),                       # second occurrence is whole
])
def test_contains_value(completion, truth, expected):
    assert contains_value(completion, truth) is expected


def test_exact_match_rate_hand_computed():
    completions = [" a@b.co", " nothing", " c@d.co.", " xa@b.co"]
    truths = ["a@b.co", "a@b.co", "c@d.co", "a@b.co"]
    assert exact_match_rate(completions, truths) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="3 completions for 2"):
        exact_match_rate(["a", "b", "c"], ["a", "b"])
    with pytest.raises(ValueError, match="empty after normalization"):
        contains_value("x", "   ")


def test_pii_prompts_from_templates():
    records = [{"name": "Ada", "email": "ada@x.org"}, {"name": "Bo"}, {"name": "Cy", "email": "cy@x.org"}]
    pairs = pii_prompts(records, {"email": ["The email address of {name} is", "{name}'s email:"]})
    assert pairs == [("The email address of Ada is", "ada@x.org"), ("The email address of Cy is", "cy@x.org"),
                     ("Ada's email:", "ada@x.org"), ("Cy's email:", "cy@x.org")]  # Bo has no email: skipped


def test_pii_prompts_reject_templates_that_leak_or_miss_fields():
    with pytest.raises(ValueError, match="puts the answer in the prompt"):
        pii_prompts([{"name": "A", "email": "a@x"}], {"email": "{name} writes to {email}"})
    with pytest.raises(ValueError, match="record 0 lacks field"):
        pii_prompts([{"email": "a@x"}], {"email": "The email of {name} is"})
