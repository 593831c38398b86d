"""Request validation and the query budget, without a server."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distillguard.serve.budget import QueryBudget
from distillguard.serve.schema import RequestError, parse_json, parse_rows, to_matrix

TYPES = {"a": "numeric", "b": "numeric"}


def error_of(fn, *args, **kwargs) -> RequestError:
    with pytest.raises(RequestError) as caught:
        fn(*args, **kwargs)
    return caught.value


def test_valid_rows_become_a_float32_matrix_in_feature_order():
    rows = parse_rows({"rows": [{"b": 2, "a": 1.5}, {"a": -3, "b": 0}]}, TYPES, max_rows=10)
    X = to_matrix(rows, TYPES)
    assert X.dtype == np.float32 and X.tolist() == [[1.5, 2.0], [-3.0, 0.0]]


MIXED = {"age": "numeric", "city": "categorical", "smoker": "boolean"}


def test_mixed_rows_keep_categories_and_missing_values_for_the_bundle_s_encoder():
    rows = parse_rows({"rows": [{"age": 41, "city": "Lyon", "smoker": None},
                                {"smoker": True, "age": 7.5, "city": None}]}, MIXED, max_rows=10)
    frame = to_matrix(rows, MIXED)
    assert list(frame.columns) == ["age", "city", "smoker"]
    assert frame.values.tolist() == [[41.0, "Lyon", None], [7.5, None, True]]


@pytest.mark.parametrize("row, fragment", [
    ({"age": 1, "city": 3, "smoker": True}, "rows[0].city: expected a category as a string or null"),
    ({"age": 1, "city": "x", "smoker": "yes"}, "rows[0].smoker: expected true, false or null"),
    ({"age": None, "city": "x", "smoker": True}, "rows[0].age: expected a finite number"),
    ({"age": 1, "city": "x" * 300, "smoker": True}, "a category of 300 characters; at most 256"),
])
def test_mixed_rows_of_the_wrong_type_are_422_naming_the_field(row, fragment):
    error = error_of(parse_rows, {"rows": [row]}, MIXED, max_rows=10)
    assert error.status == 422 and fragment in error.message and "yes" not in error.message


@pytest.mark.parametrize("body, status, fragment", [
    (b"", 400, "empty"),
    (b"{", 400, "malformed JSON at line 1"),
    (b'{"rows": [{"a": 1, "b": NaN}]}', 400, "NaN is not valid JSON"),
    (b'{"rows": [{"a": Infinity, "b": 1}]}', 400, "Infinity is not valid JSON"),
    (b'{"rows": [{"a": -Infinity, "b": 1}]}', 400, "-Infinity is not valid JSON"),
    (b"\xff\xfe{}", 400, "not UTF-8"),
    (b"[" * 200_000, 400, "nested too deeply"),
])
def test_malformed_bodies_are_400(body, status, fragment):
    error = error_of(parse_json, body)
    assert error.status == status and fragment in error.message


@pytest.mark.parametrize("payload, status, message", [
    ([], 422, 'body: expected a JSON object {"rows": [...]}, got an array'),
    ({"rows": [], "debug": 1}, 422, 'body: unknown field "debug"; expected only "rows"'),
    ({}, 422, "rows: expected an array of row objects, got nothing"),
    ({"rows": {"a": 1}}, 422, "rows: expected an array of row objects, got an object"),
    ({"rows": []}, 422, "rows: empty; expected at least one row"),
    ({"rows": [[1, 2]]}, 422, "rows[0]: expected an object of feature values, got an array"),
    ({"rows": [{"a": 1, "b": "2"}]}, 422, "rows[0].b: expected a finite number, got a string"),
    ({"rows": [{"a": 1, "b": None}]}, 422, "rows[0].b: expected a finite number, got null"),
    ({"rows": [{"a": True, "b": 1}]}, 422, "rows[0].a: expected a finite number, got a boolean"),
    ({"rows": [{"a": 1, "b": [1]}]}, 422, "rows[0].b: expected a finite number, got an array"),
    ({"rows": [{"a": 1, "b": 2}, {"a": 1}]}, 422, 'rows[1]: missing feature "b"'),
    ({"rows": [{"a": 1, "b": 2, "c": 3}]}, 422, 'rows[0]: unknown field "c"'),
    ({"rows": [{"a": 1, "c": 3}]}, 422, 'rows[0]: unknown field "c"'),
    ({"rows": [{"a": 1, "b": 2}] * 11}, 413, "rows: 11 rows in one request; at most 10"),
])
def test_schema_violations(payload, status, message):
    error = error_of(parse_rows, payload, TYPES, max_rows=10)
    assert error.status == status and error.message.startswith(message)


@pytest.mark.parametrize("text", ["1e999", "-1e999", "1" + "0" * 400, "3.5e38"])
def test_numbers_beyond_float32_are_refused(text):
    payload = parse_json(('{"rows": [{"a": %s, "b": 0}]}' % text).encode())
    error = error_of(parse_rows, payload, TYPES, max_rows=10)
    assert error.status == 422 and error.message.startswith("rows[0].a: expected a finite number within")


def test_error_messages_never_contain_the_submitted_value():
    secret = 98765.4321
    for payload in ({"rows": [{"a": secret, "b": str(secret)}]}, {"rows": [{"a": secret, "b": [secret]}]},
                    {"rows": [{"a": secret}]}, {"rows": [{"a": 1e300 * 10, "b": secret}]}):
        error = error_of(parse_rows, json.loads(json.dumps(payload)), TYPES, max_rows=10)
        assert "98765" not in error.message


def test_long_unknown_field_names_are_cut():
    error = error_of(parse_rows, {"rows": [{"a": 1, "b": 1, "x" * 5000: 1}]}, TYPES, max_rows=10)
    assert len(error.message) < 300


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_budget_charges_rows_refuses_whole_requests_and_resets_after_the_window():
    clock = Clock()
    budget = QueryBudget(10, 60, clock=clock)
    assert budget.take("1.2.3.4", 6) is None
    assert budget.take("1.2.3.4", 5) == 60          # 6 + 5 > 10: refused whole, nothing charged
    assert budget.take("1.2.3.4", 4) is None        # exactly the limit
    assert budget.retry_after("1.2.3.4") == 60
    assert budget.take("5.6.7.8", 10) is None       # another client has its own budget
    clock.now += 45.5
    assert budget.retry_after("1.2.3.4") == 15      # ceil(60 - 45.5)
    clock.now += 14.5
    assert budget.take("1.2.3.4", 10) is None       # a new window


def test_budget_table_stays_bounded():
    clock = Clock()
    budget = QueryBudget(5, 60, clock=clock, max_clients=100)
    for i in range(1000):
        budget.take(f"10.0.{i // 256}.{i % 256}", 1)
        clock.now += 0.001
    assert len(budget) <= 100
