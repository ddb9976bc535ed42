"""The results page and its charts (the page's shares recomputed exactly from the exported judgments CSV), its
interval methods, ranking, agreement and flagged-rater sections; the power page."""

import io
from html.parser import HTMLParser
from xml.etree import ElementTree

import numpy as np
import pandas as pd
import pytest
from django.urls import reverse
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

from drawbench.results import simulate
from drawbench.results.forms import PowerForm
from drawbench.results.plots import figure_bytes, preference_figure
from drawbench.results.selectors import results_from_frame
from drawbench.studies.models import RaterFlag
from tests.factories import StudyFactory

POWER_DEFAULTS = {name: field.initial for name, field in PowerForm.base_fields.items()}
# DrawBench's categories and their prompt counts (Imagen paper, Table A.1; DESIGN.md section 1).
DRAWBENCH_CATEGORIES = {
    "Colors": 25,
    "Conflicting": 10,
    "Counting": 19,
    "DALL-E": 20,
    "Descriptions": 20,
    "Gary Marcus et al.": 10,
    "Misspellings": 10,
    "Positional": 20,
    "Rare Words": 7,
    "Reddit": 38,
    "Text": 21,
}


class ResultRowParser(HTMLParser):
    """Collects the data-* attributes and the visible text of every <tr class="result-row ..."> (or another class)."""

    def __init__(self, row_class: str = "result-row"):
        super().__init__()
        self.row_class = row_class
        self.rows: list[dict] = []
        self._current: dict | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "tr" and self.row_class in (attributes.get("class") or "").split():
            self._current = {k.removeprefix("data-"): v for k, v in attributes.items() if k.startswith("data-")}
            self._current["text"] = ""

    def handle_endtag(self, tag):
        if tag == "tr" and self._current is not None:
            self.rows.append(self._current)
            self._current = None

    def handle_data(self, data):
        if self._current is not None:
            self._current["text"] += data


def page_rows(html: str) -> list[dict]:
    parser = ResultRowParser()
    parser.feed(html)
    return parser.rows


def page_url(study_id: int, **params) -> str:
    url = reverse("results:study-results", args=[study_id])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")


@pytest.mark.django_db
def test_results_page_sends_anonymous_and_non_staff_users_to_the_login_page(client, known_study, rater_user):
    for url in (
        page_url(known_study.study.pk),
        reverse("results:chart-svg", args=[known_study.study.pk]),
        reverse("results:chart-png", args=[known_study.study.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 302 and reverse("admin:login") in response["Location"]
    client.force_login(rater_user)
    response = client.get(page_url(known_study.study.pk))
    assert response.status_code == 302 and reverse("admin:login") in response["Location"]


@pytest.mark.django_db
def test_results_page_shows_counts_score_interval_method_and_tie_convention(client, staff_user, known_study):
    client.force_login(staff_user)
    response = client.get(page_url(known_study.study.pk))
    assert response.status_code == 200
    html = response.content.decode()
    assert "a tie scores ½ for each model" in html
    assert reverse("results:chart-svg", args=[known_study.study.pk]) in html
    rows = page_rows(html)
    assert len(rows) == 6
    fidelity = rows[0]
    assert (fidelity["question"], fidelity["scope"]) == ("fidelity", "overall")
    assert (fidelity["n"], fidelity["count-a"], fidelity["count-tie"], fidelity["count-b"]) == ("12", "7", "2", "3")
    assert fidelity["method"] == "two_way_cluster_t" and fidelity["low-precision"] == "true"
    assert "66.7%" in fidelity["text"]  # s = (7 + ½·2) / 12
    assert "low precision" in fidelity["text"]


@pytest.mark.django_db
def test_results_page_toggle_includes_flagged_judgments(client, staff_user, known_study):
    client.force_login(staff_user)
    default = page_rows(client.get(page_url(known_study.study.pk)).content.decode())
    included_html = client.get(page_url(known_study.study.pk, include_excluded=1)).content.decode()
    included = page_rows(included_html)
    assert (default[0]["n"], default[0]["count-a"]) == ("12", "7")
    assert (included[0]["n"], included[0]["count-a"]) == ("13", "8")
    assert "include_excluded=1" in included_html  # the chart and exports follow the toggle
    assert 'name="include_excluded" value="1" checked' in included_html


@pytest.mark.django_db
@pytest.mark.parametrize("include_excluded", [False, True])
def test_results_page_shares_are_recomputed_exactly_from_the_exported_judgments_csv(
    client, staff_user, known_study, include_excluded
):
    client.force_login(staff_user)
    study_id = known_study.study.pk
    params = {"include_excluded": "1"} if include_excluded else {}
    export = client.get(reverse("api-study-judgments", args=[study_id]), {"format": "csv", **params})
    judgments = pd.read_csv(io.BytesIO(export.content), parse_dates=["created_at"])
    html_rows = page_rows(client.get(page_url(study_id, **params)).content.decode())
    api_rows = client.get(reverse("api-study-results", args=[study_id]), params).json()
    assert len(html_rows) == len(api_rows) > 0

    for html_row, api_row in zip(html_rows, api_rows, strict=True):
        part = judgments[
            (judgments["question"] == html_row["question"])
            & (judgments["model_a"] == html_row["model-a"])
            & (judgments["model_b"] == html_row["model-b"])
        ]
        if html_row["scope"] == "category":
            part = part[part["category"] == html_row["category"]]
        n = len(part)
        counts = {choice: int((part["choice"] == choice).sum()) for choice in ("A", "tie", "B")}
        expected = {
            "n": n,
            "count_a": counts["A"],
            "count_tie": counts["tie"],
            "count_b": counts["B"],
            "share_a": counts["A"] / n,
            "share_tie": counts["tie"] / n,
            "share_b": counts["B"] / n,
            "score": (counts["A"] + counts["tie"] / 2) / n,
        }
        for field, value in expected.items():
            html_value = type(value)(html_row[field.replace("_", "-")])
            assert html_value == value, (html_row["scope"], html_row["category"], field)
            assert api_row[field] == value, (api_row["scope"], api_row["category"], field)
        assert f"{100 * expected['share_a']:.1f}%" in html_row["text"]
        assert f"{100 * expected['score']:.1f}%" in html_row["text"]
        assert html_row["method"] == api_row["method"] == "two_way_cluster_t"
        assert html_row["ci-low"] == repr(api_row["ci_low"]) and html_row["ci-high"] == repr(api_row["ci_high"])


@pytest.mark.django_db
def test_results_chart_svg_is_a_valid_svg_document(client, staff_user, known_study):
    client.force_login(staff_user)
    for scope in ("overall", "categories"):
        response = client.get(reverse("results:chart-svg", args=[known_study.study.pk]), {"scope": scope})
        assert response.status_code == 200
        assert response["Content-Type"] == "image/svg+xml"
        root = ElementTree.fromstring(response.content)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert b"imagen-mini@2" in response.content


@pytest.mark.django_db
def test_results_chart_png_is_a_valid_png_and_is_saved_for_people_to_look_at(
    client, staff_user, known_study, artifacts_dir
):
    client.force_login(staff_user)
    for scope in ("overall", "categories"):
        response = client.get(reverse("results:chart-png", args=[known_study.study.pk]), {"scope": scope})
        assert response.status_code == 200 and response["Content-Type"] == "image/png"
        image = Image.open(io.BytesIO(response.content))
        image.verify()
        assert image.format == "PNG" and image.size[0] > 600
        (artifacts_dir / f"results-chart-known-study-{scope}.png").write_bytes(response.content)


@pytest.mark.django_db
def test_results_chart_rejects_an_unknown_scope(client, staff_user, known_study):
    client.force_login(staff_user)
    response = client.get(reverse("results:chart-svg", args=[known_study.study.pk]), {"scope": "raters"})
    assert response.status_code == 400
    assert b"raters" in response.content


@pytest.mark.django_db
def test_results_page_of_a_study_without_judgments_says_so(client, staff_user):
    client.force_login(staff_user)
    study = StudyFactory()
    html = client.get(page_url(study.pk)).content.decode()
    assert 'id="no-results"' in html
    png = client.get(reverse("results:chart-png", args=[study.pk])).content
    assert Image.open(io.BytesIO(png)).format == "PNG"


def drawbench_shaped_frame(seed: int = 7, raters_per_category: int = 5) -> pd.DataFrame:
    """Simulated judgments with DrawBench's category sizes: model A is somewhat better, more so on alignment."""
    rng = np.random.default_rng(seed)
    rows = []
    position = 0
    for category, size in DRAWBENCH_CATEGORIES.items():
        for _ in range(size):
            position += 1
            prompt_effect = rng.normal(0, 0.8)
            for rater in range(raters_per_category):
                for question, edge in (("fidelity", 0.25), ("alignment", 0.6)):
                    latent = edge + prompt_effect + rng.logistic()
                    choice = "A" if latent > 0.7 else "B" if latent < -0.7 else "tie"
                    rows.append(
                        {
                            "prompt_id": position,
                            "prompt_position": position,
                            "category": category,
                            "rater_id": f"{category}-{rater}",
                            "question": question,
                            "model_a": "imagen-small@1",
                            "model_b": "sd-baseline@1",
                            "choice": choice,
                            "excluded": False,
                        }
                    )
    return pd.DataFrame(rows)


def test_chart_of_a_drawbench_shaped_study_is_saved_as_a_paper_style_figure(artifacts_dir):
    results = results_from_frame(
        drawbench_shaped_frame(), study_id=0, study_name="simulated", questions=["alignment", "fidelity"]
    )
    assert len(results["rows"]) == 2 * (1 + len(DRAWBENCH_CATEGORIES))
    for scope in ("overall", "categories"):
        png = figure_bytes(preference_figure(results, scope=scope), "png")
        assert Image.open(io.BytesIO(png)).format == "PNG"
        (artifacts_dir / f"results-chart-drawbench-{scope}.png").write_bytes(png)


def test_chart_with_several_pairs_of_models_names_each_pair(artifacts_dir):
    frame = drawbench_shaped_frame(raters_per_category=1)
    third = frame.copy()
    third["model_b"] = "third@1"
    results = results_from_frame(
        pd.concat([frame, third]), study_id=0, study_name="three models", questions=["fidelity", "alignment"]
    )
    assert len(results["questions"][0]["pairs"]) == 2
    svg = figure_bytes(preference_figure(results), "svg").decode()
    assert "imagen-small@1 vs third@1" in svg and "first-named model" in svg
    png = figure_bytes(preference_figure(results, scope="categories"), "png")
    (artifacts_dir / "results-chart-three-models-categories.png").write_bytes(png)


def page_html(client, study_id: int, **params) -> str:
    response = client.get(page_url(study_id, **params))
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.django_db
def test_results_page_prints_the_default_method_and_offers_the_bootstrap_variants(client, staff_user, known_study):
    client.force_login(staff_user)
    html = page_html(client, known_study.study.pk)
    method_note = html[html.index('id="interval-method"') :]
    assert "<code>two_way_cluster_t</code>" in method_note[: method_note.index("</p>")]
    assert "a tie scores ½ for each model" in method_note[: method_note.index("</p>")]
    assert 'id="bootstrap-settings"' not in html
    links = html[html.index('id="method-links"') :]
    links = links[: links.index("</p>")]
    for method in ("prompt_bootstrap", "prompt_bootstrap_bca", "two_way_bootstrap", "wilson"):
        assert f'href="?method={method}"' in links
    assert "wilson (reference: independent judgments)" in links


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["prompt_bootstrap", "prompt_bootstrap_bca", "two_way_bootstrap"])
def test_results_page_computes_a_bootstrap_variant_on_request_with_its_b_and_seed(
    client, staff_user, known_study, method
):
    client.force_login(staff_user)
    html = page_html(client, known_study.study.pk, method=method)
    assert 'id="bootstrap-settings">B = 2000 resamples, seed 5<' in html
    rows = page_rows(html)
    assert {(row["method"], row["b"], row["seed"]) for row in rows} == {(method, "2000", "5")}
    api_rows = client.get(reverse("api-study-results", args=[known_study.study.pk]), {"method": method}).json()
    # An undefined bound (a bootstrap without spread in a small category) is blank on the page and null in the API.
    assert [row["ci-low"] for row in rows] == ["" if row["ci_low"] is None else repr(row["ci_low"]) for row in api_rows]
    # The charts, the exports and the exclusion toggle keep the method.
    assert f"chart.svg?method={method}" in html and f"format=csv&amp;method={method}" in html
    assert f'<input type="hidden" name="method" value="{method}">' in html


@pytest.mark.django_db
def test_results_page_and_chart_reject_an_unknown_method_naming_the_known_ones(client, staff_user, known_study):
    client.force_login(staff_user)
    response = client.get(page_url(known_study.study.pk, method="bootstrap"))
    assert response.status_code == 400 and b"two_way_cluster_t" in response.content
    chart = client.get(reverse("results:chart-svg", args=[known_study.study.pk]), {"method": "bootstrap"})
    assert chart.status_code == 400


@pytest.mark.django_db
def test_results_chart_draws_the_default_interval_unless_told_otherwise(client, staff_user, known_study):
    client.force_login(staff_user)
    url = reverse("results:chart-svg", args=[known_study.study.pk])
    assert b"two_way_cluster_t" in client.get(url).content
    wilson = client.get(url, {"method": "wilson", "scope": "categories"}).content
    assert b"wilson" in wilson and b"two_way_cluster_t" not in wilson


@pytest.mark.django_db
def test_results_page_links_png_and_svg_downloads_of_both_charts(client, staff_user, known_study):
    client.force_login(staff_user)
    html = page_html(client, known_study.study.pk)
    downloads = html[html.index('id="downloads"') :]
    downloads = downloads[: downloads.index("</p>")]
    for fmt in ("svg", "png"):
        chart = reverse(f"results:chart-{fmt}", args=[known_study.study.pk])
        assert f'href="{chart}" download' in downloads
        assert f'href="{chart}?scope=categories" download' in downloads
    for name in ("api-study-results", "api-study-judgments", "api-study-raters"):
        assert reverse(name, args=[known_study.study.pk]) + "?format=csv" in downloads


@pytest.mark.django_db
def test_results_page_shows_agreement_and_position_bias(client, staff_user, known_study):
    client.force_login(staff_user)
    html = page_html(client, known_study.study.pk)
    section = html[html.index('id="agreement"') :]
    first = section[section.index('class="agreement-row overall"') :]
    first = first[: first.index("</tr>")]
    assert 'data-question="fidelity"' in first
    assert "44.4%" in first  # raw agreement 8 / 18
    assert "60.0%" in first  # P(left | decisive) = 6 / 10
    assert 'id="study-position-bias"' in section


@pytest.mark.django_db
def test_results_page_lists_per_rater_diagnostics_with_flagged_raters_marked(client, staff_user, known_study):
    RaterFlag.objects.create(rater=known_study.raters[2], reason=RaterFlag.Reason.ALWAYS_TIE)
    client.force_login(staff_user)
    html = page_html(client, known_study.study.pk, exclude_flagged_raters=1)
    parser = ResultRowParser("rater-row")
    parser.feed(html)
    raters = {row["rater"]: row for row in parser.rows}
    assert set(raters) == {rater.public_id for rater in known_study.raters}
    assert raters[known_study.raters[2].public_id]["flagged"] == "true"
    assert raters[known_study.raters[0].public_id]["n"] == "10"


@pytest.mark.django_db
def test_results_page_shows_results_with_and_without_flagged_raters_side_by_side(client, staff_user, known_study):
    client.force_login(staff_user)
    assert 'id="flagged-comparison"' not in page_html(client, known_study.study.pk)
    RaterFlag.objects.create(rater=known_study.raters[2], reason=RaterFlag.Reason.ALWAYS_TIE)
    html = page_html(client, known_study.study.pk)
    section = html[html.index('id="flagged-comparison"') :]
    fidelity = section[section.index('data-question="fidelity"') :]
    cells = [cell.split(">", 1)[1] for cell in fidelity[: fidelity.index("</tr>")].split("<td")[1:]]
    # n with flagged raters, then without: the flagged rater gave two fidelity answers.
    assert cells[2].startswith("12") and cells[4].startswith("10")
    assert "66.7%" in cells[3]  # (7 + ½·2) / 12
    assert "70.0%" in cells[5]  # the flagged rater's two ties gone: 7 / 10


@pytest.mark.django_db
def test_results_page_ranks_three_models_beside_the_pairwise_table(client, staff_user, three_model_study):
    client.force_login(staff_user)
    html = page_html(client, three_model_study.study.pk)
    section = html[html.index('id="ranking"') :]
    for fit in ("bradley_terry", "davidson"):
        table = section[section.index(f'data-fit="{fit}"') :]
        table = table[: table.index("</table>")]
        order = [line.split('data-model="')[1].split('"')[0] for line in table.split("<tr")[2:]]
        assert order == ["best@1", "mid@1", "worst@1"]
        assert 'data-model="best@1" data-rank="1"' in table
    pairwise = section[section.index('class="pairwise-table"') :]
    assert pairwise.count('class="pairwise-row"') == 3
    assert "83.3%" in pairwise  # best vs mid observed: (36 + ½·8) / 48
    assert "ranking CSV" in html
    assert 'id="ranking"' not in page_html(client, StudyFactory().pk)


@pytest.mark.django_db
def test_results_page_of_two_models_has_no_ranking(client, staff_user, known_study):
    client.force_login(staff_user)
    assert 'id="ranking"' not in page_html(client, known_study.study.pk)


def test_per_category_chart_keeps_each_panels_n_labels_clear_of_the_next_panel():
    results = results_from_frame(
        drawbench_shaped_frame(), study_id=0, study_name="simulated", questions=["alignment", "fidelity"]
    )
    assert results["rows"][0]["n"] == 1000  # the widest label: "n=1,000"
    figure = preference_figure(results, scope="categories")
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    left, right = figure.axes[:2]
    labels = [text for text in left.texts if text.get_text().startswith("n=")]
    assert "n=1,000" in [text.get_text() for text in labels]
    right_edge = right.get_window_extent(renderer).x0
    assert max(text.get_window_extent(renderer).x1 for text in labels) < right_edge
    assert max(text.get_window_extent(renderer).x1 for text in right.texts) < figure.bbox.x1 + 1


# ------------------------------------------------------------------------------------------------ power page


@pytest.mark.django_db
def test_power_page_is_for_staff_only(client, rater_user):
    url = reverse("results:power")
    response = client.get(url)
    assert response.status_code == 302 and reverse("admin:login") in response["Location"]
    client.force_login(rater_user)
    assert client.get(url).status_code == 302


@pytest.mark.django_db
def test_power_page_answers_the_drawbench_design_by_default(client, staff_user):
    client.force_login(staff_user)
    html = client.get(reverse("results:power")).content.decode()
    curve = simulate.power_curve(200, 25)
    assert f'<span id="mdd">{100 * curve.min_detectable_difference:.1f}</span> points' in html
    assert 'src="data:image/svg+xml;base64,' in html
    assert f"{curve.R} simulated studies with no difference (seed 5)" in html


@pytest.mark.django_db
def test_power_page_computes_the_design_it_is_given(client, staff_user):
    client.force_login(staff_user)
    params = {
        "prompts": 120,
        "design": "random",
        "raters": 40,
        "ratings_per_prompt": 6,
        "tie_rate": 0.2,
        "prompt_sd": 0.8,
        "rater_sd": 0.3,
    }
    html = client.get(reverse("results:power"), params).content.decode()
    curve = simulate.power_curve(
        120, 40, design="random", ratings_per_prompt=6, tie_rate=0.2, prompt_sd=0.8, rater_sd=0.3
    )
    assert f'<span id="mdd">{100 * curve.min_detectable_difference:.1f}</span> points' in html
    assert "a pool of 40 raters, 6 per prompt" in html and "720 judgments per question" in html
    default = simulate.power_curve(200, 25).min_detectable_difference
    assert curve.min_detectable_difference != pytest.approx(default, abs=1e-3)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"design": "random", "raters": 4, "ratings_per_prompt": 5}, "k = 5 exceeds the pool of 4 raters"),
        ({"prompts": 5000, "raters": 500}, "judgments per question; the page simulates at most"),
        ({"tie_rate": 1.5}, "Ensure this value is less than or equal to 0.9"),
    ],
)
def test_power_page_explains_a_design_it_cannot_compute(client, staff_user, params, message):
    client.force_login(staff_user)
    html = client.get(reverse("results:power"), {**POWER_DEFAULTS, **params}).content.decode()
    assert message in html
    assert 'id="power-result"' not in html
