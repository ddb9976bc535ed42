"""Malformed bodies to the rater API: each is a 400 that says what was wrong, and nothing is written.

Each answer body is a real answer to the rater's real pending item but for the one defect under test, so that
"nothing written" is not the accident of an unknown key.
"""

import json

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from drawbench.studies import parsers
from drawbench.studies.parsers import MAX_DEPTH, Rejected, loads_strict, nesting_depth
from tests.studies.snapshots import changed_tables, studies_rows

pytestmark = pytest.mark.django_db

GOOD_ANSWERS = '{"fidelity": "left", "alignment": "tie"}'


def url(name: str, study) -> str:
    return reverse(name, args=[study.rater_token])


@pytest.fixture
def rater_with_item(make_study):
    """(study, client authenticated by token, the key of its pending item)."""
    study = make_study(n_prompts=2)
    token = APIClient().post(url("api-rater-start", study), {}, format="json").json()["rater_token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Rater {token}")
    key = client.get(url("api-rater-assignment", study)).json()["assignment"]["key"]
    return study, client, key


def answer_body(key: str, *, answers: str = GOOD_ANSWERS, time: str = "2100", extra: str = "") -> str:
    return f'{{"key": "{key}", "answers": {answers}, "response_time_ms": {time}{extra}}}'


DEEP = "[" * 100_000 + "]" * 100_000
BAD_ANSWER_BODIES = {
    # Nesting: past Python's recursion limit (a RecursionError, once a 500) and just past ours.
    "nested-past-the-recursion-limit": lambda key: answer_body(key, extra=f', "x": {DEEP}'),
    "nested-just-too-deep": lambda key: answer_body(key, extra=', "x": ' + "[" * MAX_DEPTH + "]" * MAX_DEPTH),
    "nested-answers": lambda key: answer_body(key, answers='{"fidelity": {"fidelity": {"a": ["left"]}}}'),
    # Numbers.
    "float-out-of-range": lambda key: answer_body(key, time="1e400"),
    "negative-float-out-of-range": lambda key: answer_body(key, time="-1e400"),
    "int-of-5000-digits": lambda key: answer_body(key, time="9" * 5000),
    "int-of-25-digits": lambda key: answer_body(key, time="1" + "0" * 24),
    "nan": lambda key: answer_body(key, time="NaN"),
    "infinity": lambda key: answer_body(key, time="Infinity"),
    "minus-infinity": lambda key: answer_body(key, time="-Infinity"),
    "negative-time": lambda key: answer_body(key, time="-5"),
    "fractional-time": lambda key: answer_body(key, time="2100.5"),
    # Duplicate keys: json.loads would keep the last one quietly.
    "duplicate-top-level-key": lambda key: answer_body(key, extra=', "response_time_ms": 9'),
    "duplicate-answer": lambda key: answer_body(key, answers='{"fidelity": "left", "fidelity": "right"}'),
    # Wrong types.
    "body-is-a-list": lambda key: f'["{key}"]',
    "body-is-a-string": lambda key: f'"{key}"',
    "body-is-null": lambda key: "null",
    "body-is-a-number": lambda key: "42",
    "key-is-a-number": lambda key: answer_body("0", answers=GOOD_ANSWERS).replace('"0"', "12345"),
    "answers-is-a-list": lambda key: answer_body(key, answers='["left", "tie"]'),
    "answer-is-a-boolean": lambda key: answer_body(key, answers='{"fidelity": true, "alignment": "tie"}'),
    "time-is-text": lambda key: answer_body(key, time='"fast"'),
    "time-is-a-boolean": lambda key: answer_body(key, time="true"),
    "include-next-is-a-list": lambda key: answer_body(key, extra=', "include_next": []'),
    # Not JSON.
    "truncated": lambda key: answer_body(key)[:-3],
    "trailing-garbage": lambda key: answer_body(key) + " x",
    "unbalanced-brackets": lambda key: answer_body(key, extra=', "x": ' + "[" * 40 + "}" * 40),
    "empty-object": lambda key: "{}",
}


@pytest.mark.parametrize("name", BAD_ANSWER_BODIES)
def test_a_malformed_answer_body_is_a_400_that_says_why_and_writes_nothing(rater_with_item, name):
    study, client, key = rater_with_item
    before = studies_rows()

    response = client.post(
        url("api-rater-answer", study), BAD_ANSWER_BODIES[name](key), content_type="application/json"
    )

    assert response.status_code == 400, response.content[:300]
    body = response.json()
    assert isinstance(body, dict) and body and all(body.values())
    assert changed_tables(before, studies_rows()) == []


def test_the_same_item_is_then_answered_normally(rater_with_item):
    study, client, key = rater_with_item
    client.post(url("api-rater-answer", study), answer_body(key, time="1e400"), content_type="application/json")

    response = client.post(url("api-rater-answer", study), answer_body(key), content_type="application/json")

    assert response.status_code == 201


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b'{"key": "\xff\xfe"}', "application/json"),
        (b'{"key": "k"}', "application/json; charset=bz2_codec"),
        (b'{"key": "k"}', "application/json; charset=no-such-charset"),
    ],
)
def test_an_undecodable_body_is_a_400(rater_with_item, raw, content_type):
    study, client, _ = rater_with_item
    before = studies_rows()

    response = client.post(url("api-rater-answer", study), raw, content_type=content_type)

    assert response.status_code == 400 and response.json()
    assert changed_tables(before, studies_rows()) == []


@pytest.mark.parametrize(
    "raw",
    [
        '{"external_id": "a", "external_id": "b"}',
        '{"consent": true, "x": ' + DEEP + "}",
        '{"platform": "prolific", "external_id": "p1", "platform_session_id": 1e400}',
        '{"consent": NaN}',
        '["prolific"]',
        '{"external_id": ["a"]}',
        '{"platform": "nowhere", "external_id": "a"}',
        '{"platform": "prolific"}',
    ],
)
def test_a_malformed_start_body_is_a_400_and_makes_no_rater(make_study, raw):
    study = make_study(n_prompts=1)
    before = studies_rows()

    response = APIClient().post(url("api-rater-start", study), raw, content_type="application/json")

    assert response.status_code == 400, response.content[:300]
    assert changed_tables(before, studies_rows()) == []


@pytest.mark.parametrize("raw", ['{"end": "finish", "end": "stop"}', '{"end": "later"}', '{"end": ' + DEEP + "}", "[]"])
def test_a_malformed_completion_body_is_a_400_and_ends_nothing(rater_with_item, raw):
    study, client, _ = rater_with_item
    before = studies_rows()

    response = client.post(url("api-rater-completion", study), raw, content_type="application/json")

    assert response.status_code == 400, response.content[:300]
    assert changed_tables(before, studies_rows()) == []


# --- the parser on its own -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        {"key": "k" * 43, "answers": {"fidelity": "left", "alignment": "tie"}, "response_time_ms": 2400},
        {"deep": [[[[{"a": [1.5, -2, "[[[{{{", None, True]}]]]]},
        {"text": '"quoted" [and] {bracketed} \\ and é'},
        [1e308, -1e-308, 0, -0.0, 12345678901234567890],
        "plain",
    ],
)
def test_the_strict_parser_reads_what_json_loads_reads(value):
    raw = json.dumps(value).encode()

    assert loads_strict(raw) == json.loads(raw)


@pytest.mark.parametrize("text", ["[" * 1000 + "{" * 1000, '\\"[[[', '\\\\"]]]', '\\\\\\"{{{ \\', "é [ \u2028 ]]]"])
def test_brackets_inside_strings_do_not_count_towards_the_depth(text):
    raw = json.dumps({"caption": [text, {"x": text}]}).encode()

    assert nesting_depth(raw) == 3
    assert loads_strict(raw) == json.loads(raw)


@pytest.mark.parametrize(
    ("raw", "depth"),
    [
        (b"1", 0),
        (b"[]", 1),
        (b'{"a": [[], {}]}', 3),
        (b"[" * 33 + b"]" * 33, MAX_DEPTH + 1),
        (b"[[", None),
        (b"][", None),
    ],
)
def test_nesting_depth(raw, depth):
    assert nesting_depth(raw) == depth


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, None),
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), parsers.ERROR_TOO_DEEP.format(max=MAX_DEPTH)),
        (b'{"a": 1, "a": 1}', parsers.ERROR_DUPLICATE_KEY.format(key="a")),
        (b"[1e400]", parsers.ERROR_OUT_OF_RANGE.format(text="1e400")),
        (b"-" + b"1" * 21, parsers.ERROR_INT_TOO_LONG.format(max=parsers.MAX_INT_DIGITS)),
        (b"[NaN]", parsers.ERROR_CONSTANT.format(text="NaN")),
    ],
)
def test_the_strict_parser_refuses_with_a_message(raw, message):
    if message is None:
        loads_strict(raw)
        return
    with pytest.raises(Rejected) as refused:
        loads_strict(raw)
    assert str(refused.value) == message
