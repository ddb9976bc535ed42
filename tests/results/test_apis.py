"""The export API: permissions, JSON and CSV, dtypes after pd.read_csv, file names, flagged judgments and raters,
interval metadata, the ranking and per-rater exports."""

import io

import pandas as pd
import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from drawbench.results.apis import (
    PLATFORM_ID_COLUMNS,
    StudyJudgmentListApi,
    StudyRankingApi,
    StudyRaterDiagnosticsApi,
    StudyResultsApi,
)
from drawbench.results.selectors import JUDGMENT_COLUMNS, judgments_frame, study_results
from drawbench.studies.models import RaterFlag
from tests.factories import StudyFactory


def judgments_url(study_id: int) -> str:
    return reverse("api-study-judgments", args=[study_id])


def results_url(study_id: int) -> str:
    return reverse("api-study-results", args=[study_id])


@pytest.fixture
def staff_client(staff_user):
    client = APIClient()
    client.force_authenticate(staff_user)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("url", [judgments_url, results_url])
def test_export_refuses_anonymous_requests(known_study, url):
    response = APIClient().get(url(known_study.study.pk))
    assert response.status_code in (401, 403)
    assert "Known study" not in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("url", [judgments_url, results_url])
def test_export_refuses_logged_in_users_who_are_not_staff(known_study, rater_user, url):
    client = APIClient()
    client.force_login(rater_user)
    assert client.get(url(known_study.study.pk)).status_code == 403
    token = Token.objects.create(user=rater_user)
    token_client = APIClient()
    token_client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert token_client.get(url(known_study.study.pk), {"format": "csv"}).status_code == 403


@pytest.mark.django_db
def test_export_accepts_a_staff_token(known_study, staff_user):
    token = Token.objects.create(user=staff_user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get(judgments_url(known_study.study.pk)).status_code == 200


@pytest.mark.django_db
def test_export_of_an_unknown_study_is_not_found(staff_client):
    assert staff_client.get(judgments_url(999999)).status_code == 404


@pytest.mark.django_db
def test_judgments_csv_loads_into_pandas_with_the_right_dtypes(known_study, staff_client):
    response = staff_client.get(judgments_url(known_study.study.pk), {"format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    frame = pd.read_csv(
        io.BytesIO(response.content), encoding="utf-8", parse_dates=["created_at", "served_at", "shown_at"]
    )
    assert list(frame.columns) == list(JUDGMENT_COLUMNS)
    for column in ("study_id", "judgment_id", "prompt_id", "prompt_position", "response_time_ms"):
        assert frame[column].dtype == "int64", column
    assert frame["excluded"].dtype == bool
    assert isinstance(frame["created_at"].dtype, pd.DatetimeTZDtype) and str(frame["created_at"].dt.tz) == "UTC"
    for column in ("prompt", "category", "model_a", "model_b", "model_left", "question", "choice", "rater_id"):
        assert pd.api.types.is_string_dtype(frame[column]), column
    # The CSV is the database's content, value for value: commas, quotes, newlines and non-ASCII survive.
    expected = judgments_frame(study=known_study.study)
    pd.testing.assert_frame_equal(frame, expected, check_dtype=False)
    assert (frame["created_at"] == expected["created_at"]).all()


@pytest.mark.django_db
def test_judgments_csv_is_chosen_by_the_accept_header_too(known_study, staff_client):
    response = staff_client.get(judgments_url(known_study.study.pk), HTTP_ACCEPT="text/csv")
    assert response["Content-Type"].startswith("text/csv")
    assert response.content.decode("utf-8").splitlines()[0] == ",".join(JUDGMENT_COLUMNS)


@pytest.mark.django_db
@pytest.mark.parametrize(("url", "what"), [(judgments_url, "judgments"), (results_url, "results")])
@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_names_its_file_after_the_study(known_study, staff_client, url, what, fmt):
    response = staff_client.get(url(known_study.study.pk), {"format": fmt})
    study_id = known_study.study.pk
    assert response["Content-Disposition"] == f'attachment; filename="drawbench-study-{study_id}-{what}.{fmt}"'


@pytest.mark.django_db
def test_judgments_json_has_one_object_per_judgment_with_utc_timestamps(known_study, staff_client):
    data = staff_client.get(judgments_url(known_study.study.pk)).json()
    assert len(data) == 24
    assert list(data[0]) == list(JUDGMENT_COLUMNS)
    assert all(row["created_at"].endswith("Z") for row in data)
    assert {row["choice"] for row in data} == {"A", "tie", "B"}
    assert all(row["excluded"] is False for row in data)


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_judgments_export_includes_flagged_judgments_only_when_asked(known_study, staff_client, fmt):
    url = judgments_url(known_study.study.pk)

    def load(params):
        content = staff_client.get(url, {"format": fmt, **params}).content
        return pd.read_csv(io.BytesIO(content)) if fmt == "csv" else pd.DataFrame(pd.read_json(io.BytesIO(content)))

    default = load({})
    included = load({"include_excluded": "true"})
    assert len(default) == 24 and len(included) == 25
    assert included.set_index("judgment_id").loc[known_study.flagged.pk, "excluded"]


@pytest.mark.django_db
def test_export_rejects_a_malformed_include_excluded_flag(known_study, staff_client):
    response = staff_client.get(judgments_url(known_study.study.pk), {"include_excluded": "maybe"})
    assert response.status_code == 400
    assert "include_excluded" in response.json()


@pytest.mark.django_db
def test_judgments_csv_of_a_study_without_judgments_has_only_the_header(staff_client):
    study = StudyFactory()
    content = staff_client.get(judgments_url(study.pk), {"format": "csv"}).content.decode("utf-8")
    assert content.splitlines() == [",".join(JUDGMENT_COLUMNS)]


@pytest.mark.django_db
def test_results_csv_has_one_row_per_question_pair_and_scope_with_interval_and_method(known_study, staff_client):
    response = staff_client.get(results_url(known_study.study.pk), {"format": "csv"})
    frame = pd.read_csv(io.BytesIO(response.content))
    assert list(frame.columns) == StudyResultsApi.header()
    assert len(frame) == 2 * (1 + 2)
    keys = list(zip(frame["question"], frame["scope"], frame["category"].fillna("-"), strict=True))
    assert keys == [
        ("fidelity", "overall", "-"),
        ("fidelity", "category", "Colors"),
        ("fidelity", "category", "Counting"),
        ("alignment", "overall", "-"),
        ("alignment", "category", "Colors"),
        ("alignment", "category", "Counting"),
    ]
    fidelity = frame.iloc[0]
    assert (fidelity["n"], fidelity["count_a"], fidelity["count_tie"], fidelity["count_b"]) == (12, 7, 2, 3)
    assert fidelity["score"] == 8 / 12
    expected = study_results(study=known_study.study)["rows"][0]
    assert (fidelity["ci_low"], fidelity["ci_high"]) == (expected["ci_low"], expected["ci_high"])
    assert set(frame["method"]) == {"two_way_cluster_t"} and set(frame["tie_convention"]) == {"ties_half"}
    assert set(frame["level"]) == {0.95} and frame["B"].isna().all() and frame["seed"].isna().all()
    assert set(frame["target"]) == {"prompts of the set, raters of the pool"}
    assert frame["low_precision"].dtype == bool
    for column in ("n", "count_a", "count_tie", "count_b"):
        assert frame[column].dtype == "int64"


@pytest.mark.django_db
def test_results_json_counts_flagged_judgments_only_when_asked(known_study, staff_client):
    url = results_url(known_study.study.pk)
    default = staff_client.get(url).json()
    included = staff_client.get(url, {"include_excluded": "1"}).json()
    assert (default[0]["question"], default[0]["scope"]) == ("fidelity", "overall")
    assert (default[0]["n"], default[0]["count_a"]) == (12, 7)
    assert (included[0]["n"], included[0]["count_a"]) == (13, 8)
    assert default[0]["category"] is None


@pytest.mark.django_db
def test_openapi_schema_documents_both_exports_with_csv(staff_client):
    response = staff_client.get(reverse("api-schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json")
    schema = response.json()
    for path in ("/api/studies/{study_id}/judgments/", "/api/studies/{study_id}/results/"):
        content = schema["paths"][path]["get"]["responses"]["200"]["content"]
        assert {"application/json", "text/csv"} <= set(content)
    assert set(StudyJudgmentListApi.header()) == set(schema["components"]["schemas"]["StudyJudgmentRow"]["properties"])
    assert "method" in schema["components"]["schemas"]["StudyResultRow"]["properties"]


def raters_url(study_id: int) -> str:
    return reverse("api-study-raters", args=[study_id])


def ranking_url(study_id: int) -> str:
    return reverse("api-study-ranking", args=[study_id])


@pytest.fixture
def analyst_client(django_user_model):
    analyst = django_user_model.objects.create_user(username="analyst", password="pw-analyst")
    analyst.user_permissions.add(Permission.objects.get(codename="view_results", content_type__app_label="studies"))
    client = APIClient()
    client.force_authenticate(analyst)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "method", "B", "seed"),
    [
        ({}, "two_way_cluster_t", None, None),
        ({"method": "prompt_bootstrap"}, "prompt_bootstrap", 2000, 5),
        ({"method": "two_way_bootstrap"}, "two_way_bootstrap", 2000, 5),
        ({"method": "wilson"}, "wilson", None, None),
    ],
)
def test_results_export_records_how_every_interval_was_computed(known_study, staff_client, params, method, B, seed):
    url = results_url(known_study.study.pk)
    csv_frame = pd.read_csv(io.BytesIO(staff_client.get(url, {"format": "csv", **params}).content))
    rows = staff_client.get(url, params).json()
    assert len(rows) == len(csv_frame) == 6
    for row in rows:
        assert (row["method"], row["B"], row["seed"], row["level"]) == (method, B, seed, 0.95)
        assert row["target"] == "prompts of the set, raters of the pool" and row["tie_convention"] == "ties_half"
    assert set(csv_frame["method"]) == {method}
    if B is None:
        assert csv_frame["B"].isna().all() and csv_frame["seed"].isna().all()
    else:
        assert set(csv_frame["B"]) == {B} and set(csv_frame["seed"]) == {seed}
    # Shares and s do not depend on the method: they are the counts' own.
    assert (rows[0]["count_a"], rows[0]["count_tie"], rows[0]["n"], rows[0]["score"]) == (7, 2, 12, 8 / 12)


@pytest.mark.django_db
def test_results_export_rejects_an_unknown_interval_method(known_study, staff_client):
    response = staff_client.get(results_url(known_study.study.pk), {"method": "bca"})
    assert response.status_code == 400
    assert "method" in response.json()


@pytest.mark.django_db
def test_results_export_carries_agreement_and_position_bias_columns(known_study, staff_client):
    fidelity = staff_client.get(results_url(known_study.study.pk)).json()[0]
    assert fidelity["raw_agreement"] == pytest.approx(8 / 18) and fidelity["agreement_units"] == 5
    assert fidelity["left_rate"] == pytest.approx(0.6) and fidelity["left_rate_method"] == "two_way_cluster_t"
    assert fidelity["left_rate_low"] < fidelity["left_rate"] < fidelity["left_rate_high"]


@pytest.mark.django_db
def test_results_export_says_in_each_row_whether_flagged_raters_were_left_out(known_study, staff_client):
    RaterFlag.objects.create(rater=known_study.raters[2], reason=RaterFlag.Reason.ALWAYS_TIE)
    url = results_url(known_study.study.pk)
    kept = pd.read_csv(io.BytesIO(staff_client.get(url, {"format": "csv"}).content))
    left_out = pd.read_csv(io.BytesIO(staff_client.get(url, {"format": "csv", "exclude_flagged_raters": "1"}).content))
    assert not kept["exclude_flagged_raters"].any() and left_out["exclude_flagged_raters"].all()
    assert (kept.loc[0, "n"], left_out.loc[0, "n"]) == (12, 10)


@pytest.mark.django_db
@pytest.mark.parametrize("url", [raters_url, ranking_url])
def test_rater_and_ranking_exports_refuse_anonymous_users_and_users_without_a_role(known_study, rater_user, url):
    assert APIClient().get(url(known_study.study.pk)).status_code in (401, 403)
    client = APIClient()
    client.force_login(rater_user)
    assert client.get(url(known_study.study.pk)).status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("url", [raters_url, ranking_url])
def test_rater_and_ranking_exports_are_open_to_staff_and_analysts(known_study, staff_client, analyst_client, url):
    assert staff_client.get(url(known_study.study.pk)).status_code == 200
    assert analyst_client.get(url(known_study.study.pk), {"format": "csv"}).status_code == 200


@pytest.mark.django_db
def test_rater_export_recounts_from_the_judgments_export(known_study, staff_client):
    RaterFlag.objects.create(rater=known_study.raters[1], reason=RaterFlag.Reason.TOO_FAST)
    study_id = known_study.study.pk
    response = staff_client.get(raters_url(study_id), {"format": "csv"})
    assert response["Content-Disposition"] == f'attachment; filename="drawbench-study-{study_id}-raters.csv"'
    raters = pd.read_csv(io.BytesIO(response.content), keep_default_na=False)
    assert list(raters.columns) == StudyRaterDiagnosticsApi.header()
    raters = raters.set_index("rater_id")
    judgments = pd.read_csv(io.BytesIO(staff_client.get(judgments_url(study_id), {"format": "csv"}).content))
    for rater_id, part in judgments.groupby("rater_id"):
        row = raters.loc[rater_id]
        decisive = part[part["choice"] != "tie"]
        chose_left = (decisive["choice"] == "A") == (decisive["model_left"] == decisive["model_a"])
        assert row["n"] == len(part)
        assert float(row["tie_rate"]) == pytest.approx((part["choice"] == "tie").mean())
        assert float(row["left_rate"]) == pytest.approx(chose_left.mean())
        assert float(row["median_response_ms"]) == part["response_time_ms"].median()
    assert raters.loc[known_study.raters[1].public_id, "flag_reasons"] == "too_fast"
    assert str(raters.loc[known_study.raters[1].public_id, "flagged"]) == "True"
    assert set(raters["left_method"]) == {"wilson_prompt_clustered"}


@pytest.mark.django_db
def test_rater_export_counts_excluded_judgments_only_when_asked(known_study, staff_client):
    url = raters_url(known_study.study.pk)
    third = known_study.raters[2].public_id
    default = {row["rater_id"]: row for row in staff_client.get(url).json()}
    included = {row["rater_id"]: row for row in staff_client.get(url, {"include_excluded": "true"}).json()}
    assert (default[third]["n"], included[third]["n"]) == (4, 5)


@pytest.mark.django_db
def test_ranking_export_lists_each_fit_and_model_of_a_three_model_study(three_model_study, staff_client):
    rows = staff_client.get(ranking_url(three_model_study.study.pk)).json()
    assert [(row["pair_model"], row["evaluated_model"]) for row in rows] == [
        ("bradley_terry", "best@1"),
        ("bradley_terry", "mid@1"),
        ("bradley_terry", "worst@1"),
        ("davidson", "best@1"),
        ("davidson", "mid@1"),
        ("davidson", "worst@1"),
    ]
    assert {(row["method"], row["B"], row["seed"], row["level"]) for row in rows} == {
        ("prompt_bootstrap_stratified", 2000, 5, 0.95)
    }
    assert all(row["strength_low"] <= row["strength"] <= row["strength_high"] for row in rows)
    assert rows[0]["rank"] == 1 and rows[0]["tie_parameter"] is None and rows[3]["tie_parameter"] > 0


@pytest.mark.django_db
def test_ranking_export_of_two_models_is_empty_with_its_header(known_study, staff_client):
    content = staff_client.get(ranking_url(known_study.study.pk), {"format": "csv"}).content.decode()
    assert content.splitlines() == [",".join(StudyRankingApi.header())]


@pytest.mark.django_db
def test_openapi_schema_documents_the_rater_and_ranking_exports(staff_client):
    schema = staff_client.get(reverse("api-schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    for path, component, api in (
        ("/api/studies/{study_id}/raters/", "StudyRaterRow", StudyRaterDiagnosticsApi),
        ("/api/studies/{study_id}/ranking/", "StudyRankingRow", StudyRankingApi),
    ):
        content = schema["paths"][path]["get"]["responses"]["200"]["content"]
        assert {"application/json", "text/csv"} <= set(content)
        optional = PLATFORM_ID_COLUMNS if api is StudyRaterDiagnosticsApi else ()  # with ?platform_ids=1 only
        assert {*api.header(), *optional} == set(schema["components"]["schemas"][component]["properties"])
    results_parameters = {p["name"] for p in schema["paths"]["/api/studies/{study_id}/results/"]["get"]["parameters"]}
    assert {"method", "include_excluded", "exclude_flagged_raters"} <= results_parameters
    result_row = schema["components"]["schemas"]["StudyResultRow"]["properties"]
    assert {"method", "level", "B", "seed", "target", "alpha_nominal", "left_rate"} <= set(result_row)
