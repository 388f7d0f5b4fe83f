"""The HTML reports are self-contained: checked as text and, where Chromium is installed, in a headless browser.

Both reports (``write_evaluation_report`` and the ``reproduce`` report of ``write_report``) are rendered
from a copy of report.html alone in an empty folder, under a Content-Security-Policy that allows only
``data:`` images and inline styles and scripts. A probe script records every policy violation (any
attempt to load a file or URL), the page's resource-timing entries, and each <img>'s source and decoded
width; any request, any image not embedded, any image that did not decode fails the test. The browser
goes through a dead proxy with host resolution switched off, so nothing can reach the network.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import warnings
from html.parser import HTMLParser
from pathlib import Path

import pytest

import cxrclassify as cx
from cxrclassify.evaluation import format_ci
from cxrclassify.exceptions import ArgumentTypeError, EvaluationWarning
from cxrclassify.report import AdultControlResult, ModelResult, write_evaluation_report, write_report

IMAGE_SIZE = 32
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
MODEL_INFO = {"architecture": "tinycnn", "base weights": "random initialisation", "image size": IMAGE_SIZE,
              "preprocessing": "tf", "epochs run": 1, "note": "<script>alert('x')</script> & more"}


# --- fixtures: one tiny model, trained for one epoch, and both reports -----------------------------------------


@pytest.fixture(scope="module")
def trained():
    """The sample split, a one-epoch tiny CNN (registered by conftest), its history and its evaluation."""
    data = cx.load_datasets("sample", image_size=IMAGE_SIZE, test_fraction=0.25, seed=0, progress=False)
    model = cx.build_model("tinycnn", len(data.class_names), weights=None, class_names=data.class_names,
                           image_size=IMAGE_SIZE, seed=0)
    history = cx.train(model, data, epochs=1, seed=0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EvaluationWarning)  # a dozen test images: wide, flagged AUC intervals
        evaluation = cx.evaluate(model, data.test, n_bootstrap=50, seed=0)
    return data, history, evaluation


@pytest.fixture(scope="module")
def evaluation_report(trained, tmp_path_factory) -> Path:
    _, history, evaluation = trained
    return write_evaluation_report(tmp_path_factory.mktemp("evaluation") / "report", evaluation,
                                   title="Sample & tiny CNN", model_info=MODEL_INFO, history=history)


@pytest.fixture(scope="module")
def reproduce_report(trained, tmp_path_factory) -> Path:
    """The reproduce report, written by ``write_report`` from results as ``reproduce`` makes them (no retraining)."""
    data, history, evaluation = trained
    out = tmp_path_factory.mktemp("reproduce")
    written = cx.save_evaluation_figures(evaluation, out / "figures" / "tinycnn", history=history,
                                         formats=("png", "svg"))
    figures = {path.stem.replace("_", " "): path for path in written if path.suffix == ".png"}
    result = ModelResult("tinycnn", "random initialisation", 1.0, history, evaluation, figures,
                         audit="not run: a test of the report")
    adults = {"skipped": None, "data": data, "n_test": evaluation.n_images,
              "comparisons": [AdultControlResult("tinycnn", evaluation, evaluation, 0, 1.0)]}
    settings = {"epochs": 1, "image_size": IMAGE_SIZE, "seed": 0}
    return write_report(out, data, [result], settings, adult_section=adults)


# --- without a browser ------------------------------------------------------------------------------------------


class _Resources(HTMLParser):
    """Every tag and every src/href/srcset/poster/data attribute of a page."""

    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []
        self.links: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "poster", "data", "action", "background"):
                self.links.append((name, value or ""))
                if tag == "img" and name == "src":
                    self.images.append(value or "")


def _parse(page: str) -> _Resources:
    parser = _Resources()
    parser.feed(page)
    return parser


def _markdown_figures(markdown: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)


def test_evaluation_report_is_self_contained(evaluation_report, trained):
    _, history, evaluation = trained
    out = evaluation_report.parent
    assert evaluation_report == out / "report.html"
    page = evaluation_report.read_text(encoding="utf-8")
    resources = _parse(page)
    # Five PNG figures (with the training curves), each embedded; nothing else is linked.
    assert len(resources.images) == 5
    assert all(src.startswith("data:image/png;base64,") for src in resources.images)
    assert [name for name, value in resources.links if not value.startswith("data:")] == []
    assert not {"link", "script", "iframe", "object", "embed", "source", "video", "audio"} & set(resources.tags)
    assert "http://" not in page and "https://" not in page and "url(" not in page and "@import" not in page
    # The content: accuracy with its CI, per class, per source, confusion matrix, the note, the model's facts.
    assert format_ci(evaluation.accuracy, evaluation.accuracy_ci) in page and "95% CI" in page
    assert "Per class" in page and "Per source" in page and "Confusion matrix" in page
    assert all(f"<td>{name}</td>" in page for name in evaluation.class_names)
    assert all(f"<td>{source}</td>" in page for source in evaluation.by_source)
    assert "Not a diagnostic device" in page and "not a diagnostic device" in page
    assert "<td>architecture</td><td>tinycnn</td>" in page and "<td>epochs run</td><td>1</td>" in page
    # Every text is escaped.
    assert "<script>" not in page and html.escape(MODEL_INFO["note"]) in page
    assert "<title>Sample &amp; tiny CNN</title>" in page and "<h1>Sample &amp; tiny CNN</h1>" in page
    # report.md links the figures next to it; metrics.json holds the metrics, the model's facts and the history.
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert sorted(_markdown_figures(markdown)) == sorted(path.name for path in out.glob("*.png"))
    assert "Not a diagnostic device" in markdown and "| architecture | tinycnn |" in markdown
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["n_images"] == evaluation.n_images and metrics["accuracy_ci"] == list(evaluation.accuracy_ci)
    assert metrics["model_info"]["architecture"] == "tinycnn" and len(metrics["history"]["loss"]) == 1
    assert set(metrics["by_source"]) == set(evaluation.by_source) and metrics["versions"]["keras"]


def test_evaluation_report_without_model_info_or_history(trained, tmp_path):
    evaluation = trained[2]
    path = write_evaluation_report(tmp_path / "new" / "folder", evaluation)
    page = path.read_text(encoding="utf-8")
    assert "<title>cxrclassify evaluation</title>" in page and "No model information was given." in page
    assert len(_parse(page).images) == 4 and not (path.parent / "training_curves.png").exists()
    assert json.loads((path.parent / "metrics.json").read_text())["history"] is None


def test_evaluation_report_wants_an_evaluation(tmp_path):
    with pytest.raises(ArgumentTypeError, match="evaluation of type dict"):
        write_evaluation_report(tmp_path, {"accuracy": 1.0})


def test_reproduce_report_is_self_contained(reproduce_report):
    page = reproduce_report.read_text(encoding="utf-8")
    resources = _parse(page)
    assert len(resources.images) == 5
    assert all(src.startswith("data:image/png;base64,") for src in resources.images)
    assert [name for name, value in resources.links if not value.startswith("data:")] == []
    assert "http://" not in page and "https://" not in page
    assert "not a diagnostic device" in page and "Tested on adult controls" in page and "Shortcut audit" in page
    markdown = (reproduce_report.parent / "report.md").read_text(encoding="utf-8")
    linked = _markdown_figures(markdown)
    assert len(linked) == 5 and all(link.startswith("figures/tinycnn/") for link in linked)
    assert all((reproduce_report.parent / link).is_file() for link in linked)


# --- in a headless browser --------------------------------------------------------------------------------------

_POLICY = ("<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; "
           "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">")
_LISTENER = ("<script>window.__cxrBlocked=[];document.addEventListener('securitypolicyviolation',"
             "function(e){window.__cxrBlocked.push(e.effectiveDirective+' '+e.blockedURI);});</script>")
_PROBE = """<script>window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var summary = {
    images: images.length,
    embedded: images.filter(function (i) { return i.getAttribute('src').indexOf('data:') === 0; }).length,
    decoded: images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length,
    not_embedded: images.filter(function (i) { return i.getAttribute('src').indexOf('data:') !== 0; })
      .map(function (i) { return i.getAttribute('src').slice(0, 200); }),
    resources: performance.getEntriesByType('resource').map(function (e) { return e.name.slice(0, 200); }),
    blocked: window.__cxrBlocked
  };
  var out = document.createElement('pre');
  out.id = 'cxr-probe';
  out.textContent = JSON.stringify(summary);
  document.body.appendChild(out);
});</script>"""


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(f"no headless browser: none of {', '.join(BROWSERS)} is on PATH "
                "(.ci/run installs chromium where it can)")


def _render(report: Path, folder: Path) -> dict:
    """Open a copy of ``report`` (alone in an empty folder) in headless Chromium; return the probe's summary."""
    browser = _browser()
    page = report.read_text(encoding="utf-8")
    head, body = page.lower().find("<head>"), page.lower().rfind("</body>")
    assert head >= 0 and body > head, "the report has no <head> or no </body>"
    head += len("<head>")
    probed = page[:head] + _LISTENER + _POLICY + page[head:body] + _PROBE + page[body:]
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / "report.html"
    copy.write_text(probed, encoding="utf-8")
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-first-run", "--disable-extensions", "--disable-sync", "--disable-background-networking",
               "--disable-component-update", "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
               f"--user-data-dir={folder / 'profile'}", "--virtual-time-budget=5000", "--dump-dom", copy.as_uri()]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{browser} did not render {copy} within 60 s")
    found = re.search(r'<pre id="cxr-probe">(.*?)</pre>', completed.stdout, re.DOTALL)
    assert found, (f"{browser} exited {completed.returncode} without the probe's summary; "
                   f"stderr ends: {completed.stderr[-2000:]}")
    return json.loads(html.unescape(found.group(1)))


def _assert_self_contained(summary: dict, n_images: int) -> None:
    assert summary["images"] == n_images, summary
    assert summary["not_embedded"] == [] and summary["embedded"] == n_images, summary
    assert summary["decoded"] == n_images, summary
    assert summary["resources"] == [] and summary["blocked"] == [], summary


def test_evaluation_report_in_a_browser(evaluation_report, tmp_path):
    _assert_self_contained(_render(evaluation_report, tmp_path / "page"), 5)


def test_reproduce_report_in_a_browser(reproduce_report, tmp_path):
    _assert_self_contained(_render(reproduce_report, tmp_path / "page"), 5)


def test_the_browser_probe_sees_files_and_urls(evaluation_report, tmp_path):
    """The probe itself: a figure linked by path, a stylesheet URL and a broken embedded image are all caught."""
    page = evaluation_report.read_text(encoding="utf-8")
    first = page.index("src='data:image/png;base64,")
    end = page.index("'", first + len("src='"))
    page = page[:first] + "src='confusion_matrix.png'" + page[end + 1:]
    page = page.replace("</title>", "</title><link rel='stylesheet' href='https://example.invalid/a.css'>", 1)
    page = page.replace("</body>", "<img alt='broken' src='data:image/png;base64,AAAA'></body>", 1)
    leaky = tmp_path / "leaky" / "report.html"
    leaky.parent.mkdir()
    leaky.write_text(page, encoding="utf-8")
    summary = _render(leaky, tmp_path / "page")
    assert summary["images"] == 6 and summary["embedded"] == 5 and summary["decoded"] == 4, summary
    assert summary["not_embedded"] == ["confusion_matrix.png"], summary
    assert any("example.invalid" in entry for entry in summary["blocked"] + summary["resources"]), summary
    assert any(entry.startswith("img-src") for entry in summary["blocked"]), summary
