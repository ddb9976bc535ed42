"""Smoke test of a production server, as a browser sees it: `python .ci/smoke.py BASE_URL USER PASSWORD`.

Behind the TLS proxy that production has, every request says X-Forwarded-Proto: https (the server runs with
DJANGO_BEHIND_TLS_PROXY=1), so secure cookies, HSTS and the CSRF origin checks are those of the real site. Logs in,
creates and opens a study on the dashboard from the first prompt set and models it finds, starts as a rater, and
fetches the rating page, the first image in it (whatever its URL looks like), the dashboard and a static file.
Prints one line per fetch (status, content type, size) and exits non-zero on the first failure.
"""

import http.client
import re
import sys
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urljoin, urlsplit

TIMEOUT_S = 30


class Browser:
    """Cookies (whatever their Secure flag: the proxy would have been https), redirects by hand, https headers."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.cookies: dict[str, str] = {}
        self.netloc = urlsplit(self.base).netloc

    def request(self, method: str, url: str, body: dict | None = None, headers: dict | None = None):
        target = urljoin(self.base + "/", url)
        parts = urlsplit(target)
        if parts.netloc != self.netloc:
            # Somewhere else (object storage): fetched as it is, without this site's cookies.
            connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
            connection = connection_class(parts.netloc, timeout=TIMEOUT_S)
            connection.request(method, target[len(f"{parts.scheme}://{parts.netloc}") :] or "/")
            response = connection.getresponse()
            return response, response.read()
        all_headers = {
            "Host": self.netloc,
            "X-Forwarded-Proto": "https",
            "User-Agent": "drawbench-smoke",
            "Accept": "text/html,application/xhtml+xml,*/*",
        }
        if self.cookies:
            all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        data = None
        if body is not None:
            data = urlencode(body, doseq=True)
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
            all_headers["Origin"] = f"https://{self.netloc}"
            all_headers["Referer"] = f"https://{self.netloc}{parts.path}"
        all_headers.update(headers or {})
        connection = http.client.HTTPConnection(self.netloc, timeout=TIMEOUT_S)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request(method, path, body=data, headers=all_headers)
        response = connection.getresponse()
        content = response.read()
        for header in response.headers.get_all("Set-Cookie") or []:
            cookie = SimpleCookie()
            cookie.load(header)
            for name, morsel in cookie.items():
                self.cookies[name] = morsel.value
        return response, content

    def follow(self, method: str, url: str, body: dict | None = None):
        response, content = self.request(method, url, body)
        for _ in range(5):
            if response.status not in (301, 302, 303):
                break
            url = response.headers["Location"]
            response, content = self.request("GET", url)
        return response, content, url


def csrf_token(html: bytes) -> str:
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    if not match:
        fail("no CSRF token in the form")
    return match.group(1).decode()


def fail(message: str) -> None:
    print(f"smoke: FAILED: {message}", flush=True)
    sys.exit(1)


def report(what: str, response, content: bytes, expect: int = 200, type_prefix: str = "") -> None:
    content_type = response.headers.get("Content-Type", "")
    print(f"smoke: {what:<28} {response.status} {content_type:<32} {len(content):>7} bytes", flush=True)
    if response.status != expect:
        fail(f"{what}: status {response.status}, expected {expect}: {content[:300]!r}")
    if type_prefix and not content_type.startswith(type_prefix):
        fail(f"{what}: content type {content_type!r}, expected {type_prefix}")


def main(base: str, username: str, password: str) -> None:
    staff, rater = Browser(base), Browser(base)

    response, content = staff.request("GET", "/dashboard/")
    if response.status != 302 or "/admin/login/" not in response.headers.get("Location", ""):
        fail(f"anonymous dashboard: {response.status}, expected a redirect to the login page")
    response, login_page, _ = staff.follow("GET", "/admin/login/?next=/dashboard/")
    report("login page", response, login_page, type_prefix="text/html")
    for header in ("Content-Security-Policy", "Strict-Transport-Security", "X-Content-Type-Options"):
        if header not in response.headers:
            fail(f"login page has no {header} header")
    body = {
        "username": username,
        "password": password,
        "csrfmiddlewaretoken": csrf_token(login_page),
        "next": "/dashboard/",
    }
    response, dashboard, _ = staff.follow("POST", "/admin/login/?next=/dashboard/", body)
    report("dashboard", response, dashboard, type_prefix="text/html")
    if b"New study" not in dashboard:
        fail("the dashboard page does not look like the dashboard")

    static = re.search(rb'(?:href|src)="(/static/[^"]+\.(?:css|js))"', login_page)
    if not static:
        fail("no static file linked from the login page")
    response, content = staff.request("GET", static.group(1).decode())
    report(f"static {static.group(1).decode().rsplit('/', 1)[-1][:20]}", response, content)
    if "max-age" not in response.headers.get("Cache-Control", ""):
        fail("static file without a Cache-Control max-age (whitenoise)")

    # The catalog pages, each with its static files (the manifest storage refuses a file it did not collect).
    for path in ("/dashboard/models/", "/dashboard/prompt-sets/", "/dashboard/samples/import/", "/dashboard/runs/"):
        response, page = staff.request("GET", path)
        report(f"catalog {path.split('/')[2]}", response, page, type_prefix="text/html")
        for asset in re.findall(rb'(?:href|src)="(/static/[^"]+\.(?:css|js))"', page):
            response, content = staff.request("GET", asset.decode())
            if response.status != 200:
                fail(f"{path} links {asset.decode()}, which answers {response.status}")

    response, form_page = staff.request("GET", "/dashboard/studies/new/")
    report("new study form", response, form_page, type_prefix="text/html")
    prompt_set = re.search(rb'<option value="(\d+)"', form_page)
    models = re.findall(rb'name="evaluated_models" value="(\d+)"', form_page)
    if not prompt_set or len(models) < 2:
        fail("the new study form offers no prompt set or fewer than two models")
    body = {
        "csrfmiddlewaretoken": csrf_token(form_page),
        "name": "Smoke study",
        "prompt_set": prompt_set.group(1).decode(),
        "evaluated_models": [m.decode() for m in models[:2]],
        "questions": ["fidelity", "alignment"],
        "samples_per_side": "2",
        "ratings_per_comparison": "3",
    }
    response, detail, detail_url = staff.follow("POST", "/dashboard/studies/new/", body)
    report("study created", response, detail, type_prefix="text/html")
    response, detail, _ = staff.follow(
        "POST", urljoin(detail_url, "open/"), {"csrfmiddlewaretoken": csrf_token(detail)}
    )
    report("study opened", response, detail, type_prefix="text/html")
    link = re.search(rb"(/s/[A-Za-z0-9_-]+/)", detail)
    if not link:
        fail("no rater link on the study page")
    study_link = link.group(1).decode()

    response, entry = rater.request("GET", study_link)
    report("rater entry page", response, entry, type_prefix="text/html")
    response, page, page_url = rater.follow("POST", study_link, {"csrfmiddlewaretoken": csrf_token(entry)})
    report("rater page", response, page, type_prefix="text/html")
    image = re.search(rb'<img[^>]*\ssrc="([^"]+)"', page)
    if not image:
        fail(f"no image on the rater page {page_url}")
    image_url = image.group(1).decode().replace("&amp;", "&")
    response, content = rater.request("GET", urljoin(urljoin(base, page_url), image_url))
    report("rater image", response, content, type_prefix="image/")

    response, content = rater.request("GET", "/media/")
    report("/media/ (not served)", response, content, expect=404)
    print("smoke: passed", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
