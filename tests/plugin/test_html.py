"""--upskill-html: one self-contained file, rendered in a real headless Chromium (Debian's
``chromium``; .ci/run installs it, and these tests skip with that reason where it is missing): it
renders with no console message, the DOM holds the figures of the JSON report, hostile answers
stay text, and the filters work."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from test_reports import ALPHA, BETA_CASE, CASES, SECRET, aliases

pytestmark = pytest.mark.slow  # a headless browser

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
# .ci/run installs Chromium and sets UPSKILL_REQUIRE_BROWSER: there a missing browser fails these tests
needs_browser = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("UPSKILL_REQUIRE_BROWSER"),
    reason="needs a headless Chromium: apt-get install chromium (.ci/run installs it)",
)

HOSTILE = "<img src=x onerror=\"document.title='pwned'\"></pre></script><script>document.title='pwned'</script>"


class Dom(HTMLParser):
    """What a test reads from a page: figures by key, elements by tag, cases and their visibility."""

    def __init__(self, text: str):
        super().__init__()
        self.figures: dict[str, str] = {}
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.raw = text
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        found = dict(attrs)
        self.tags.append((tag, found))
        if "data-key" in found and "data-value" in found:
            self.figures[str(found["data-key"])] = str(found["data-value"])

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())]

    @property
    def body(self) -> dict[str, str | None]:
        return self.all("body")[0]


def browse(page: Path, tmp_path: Path, fragment: str = "") -> tuple[Dom, list[str]]:
    """The page's DOM after its script ran, and every console message (a page of ours logs none)."""
    assert CHROMIUM is not None, "no chromium on PATH, and UPSKILL_REQUIRE_BROWSER is set (.ci/run installs it)"
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--no-first-run",
            "--host-resolver-rules=MAP * ~NOTFOUND",  # and nothing may be fetched anyway
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            page.as_uri() + fragment,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return Dom(done.stdout), [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture
def skills(write_skill, pytester, model_server, monkeypatch):
    monkeypatch.setenv("GAMMA_KEY", SECRET)
    write_skill("alpha-facts", {"tests": CASES}, body=f"{ALPHA} {HOSTILE}")
    write_skill("beta-facts", {"tests": [BETA_CASE]}, body="Beta knows nothing.")
    aliases(pytester, model_server)


def html_run(pytester, *args: str):
    return pytester.runpytest_subprocess(
        "skills", "--upskill-models", "gamma,delta", "--upskill-report", "r.json", "--upskill-html", "r.html", *args
    )


@needs_browser
def test_the_harness_sees_a_console_error(tmp_path):
    """browse() would catch a page whose script fails."""
    page = tmp_path / "bad.html"
    page.write_text("<!doctype html><p>x</p><script>undefinedFunction()</script>")
    _, console = browse(page, tmp_path)
    assert any("undefinedFunction is not defined" in line for line in console)


@needs_browser
def test_the_page_renders_with_the_figures_of_the_json_report(pytester, skills, tmp_path):
    old = {"schema_version": 2, "results": [{"skill": "alpha-facts", "model": "gamma", "cases": []}]}
    old["results"][0]["cases"] = [{"case": "unsure", "baseline": [True], "with_skill": [True]}]
    (pytester.path / "old.json").write_text(json.dumps(old))
    html_run(pytester, "-n", "2", "--upskill-min-lift", "0.5", "--upskill-compare", "old.json")
    data = json.loads((pytester.path / "r.json").read_text())
    dom, console = browse(pytester.path / "r.html", tmp_path)
    assert console == []
    assert dom.body["data-ready"] == "yes"  # the script ran (the page's policy allowed it by its hash)
    for r in data["results"]:
        key = f"{r['skill']}|{r['model']}"
        expected = {
            "baseline.pass_rate": r["baseline"]["pass_rate"],
            "with_skill.pass_rate": r["with_skill"]["pass_rate"],
            "lift": r["lift"],
            "lift_ci_low": r["lift_ci"][0],
            "lift_ci_high": r["lift_ci"][1],
            "input_tokens_delta": r["token_delta"]["input_tokens"],
            "output_tokens_delta": r["token_delta"]["output_tokens"],
            "cost_delta": r["with_skill"]["cost"] - r["baseline"]["cost"],
        }
        for name, value in expected.items():
            assert float(dom.figures[f"{key}|{name}"]) == pytest.approx(value), (key, name)
    verdicts = {v.get("data-key"): v for v in dom.all("span") if (v.get("data-key") or "").endswith("|verdict")}
    assert set(verdicts) == {f"{v['skill']}|{v['model']}|verdict" for v in data["verdicts"]}
    assert len(dom.all("details", **{"class": "case"})) == sum(len(r["cases"]) for r in data["results"])
    text = "".join(dom.text)
    assert "contains: missing (case-insensitive): ['not sure']" in text  # the failing check, per trial
    assert "case unsure: with skill passed before, fails now" in text  # --upskill-compare's flip
    assert "lift INCONCLUSIVE" in text  # the failing gate
    # the hostile answer is text: no element of its own, and its script never ran
    assert HOSTILE in text
    assert dom.all("img") == [] and len(dom.all("script")) == 1
    assert re.findall(r"<title>(.*?)</title>", dom.raw)[0] == "pytest-upskill report"  # the document title
    # issue 30, item 7: the paired lift is the primary figure, drawn with its interval, before the rates;
    # the arms' own intervals (which overlap where the paired lift is clear) are not drawn as whiskers
    heads = re.findall(r"<th>(.*?)</th>", dom.raw)
    assert heads.index("lift, paired [95% CI]") < heads.index("pass rate")
    rates = re.findall(r'<svg class="rates".*?</svg>', dom.raw)
    assert rates and all("<path" not in svg for svg in rates)


@needs_browser
def test_the_filters_and_the_trend(pytester, skills, tmp_path):
    for _ in range(2):
        html_run(pytester, "--upskill-history", "hist")
    page = pytester.path / "r.html"
    dom, console = browse(page, tmp_path)
    assert console == []
    assert [svg.get("data-runs") for svg in dom.all("svg", **{"class": "trend"})] == ["2"] * 4
    dom, console = browse(page, tmp_path, "#model=delta&outcome=fixed&case=beta")
    assert console == []
    cases = dom.all("details", **{"class": "case"})
    visible = [(c["data-skill"], c["data-model"], c["data-outcome"]) for c in cases if "hidden" not in c]
    assert visible == [("alpha-facts", "delta", "fixed"), ("beta-facts", "delta", "fixed")]
    assert [(c["data-case"], c["data-model"]) for c in cases if "open" in c] == [("beta", "gamma"), ("beta", "delta")]
    rows = dom.all("tr", **{"class": "result"})
    assert [r["data-model"] for r in rows if "hidden" not in r] == ["delta", "delta"]
    assert "2 of 6 case(s) shown" in "".join(dom.text)


def test_the_page_is_self_contained_and_allows_only_its_own_script(pytester, skills):
    """Checked without a browser too: nothing to fetch, and a policy that names our two blocks."""
    html_run(pytester)
    page = (pytester.path / "r.html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|@import|url\(""", page)
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert policy and "default-src 'none'" in policy.group(1)
    for tag in ("style", "script"):
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", page, re.S)
        assert len(blocks) == 1, tag
        digest = base64.b64encode(hashlib.sha256(blocks[0].encode()).digest()).decode()
        assert f"{tag}-src 'sha256-{digest}'" in policy.group(1)
    assert "<img" not in page and "&lt;img src=x" in page
