"""The status page, read in a real browser (Debian's Chromium, driven by chromedriver)
against a running daemon; the screenshot is what README shows."""

from __future__ import annotations

import base64
import os
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelsync.publish import publish
from modelsync.statuspage import render
from tests.daemonproc import DaemonProcess
from tests.helpers import write_tree

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
HOSTILE = "<script>window.__pwned = 1</script>"
TOKEN = "s3cret-token"


@pytest.fixture
def browser() -> Iterator[object]:
    if CHROMIUM is None or DRIVER is None:
        pytest.skip(
            "Debian's chromium and chromium-driver are not installed (.ci/run installs them)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,1500"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def _publish(
    root: Path,
    url: str,
    version: int,
    auc: float,
    extra: dict[str, float] | None = None,
    **meta: str,
) -> None:
    src = write_tree(root / f"src{version}", {"model.bin": b"v%d" % version * 100})
    metrics = {"auc": auc, "latency_ms": 10.0 + version, **(extra or {})}
    publish(src, url, version=version, metrics=metrics, metadata=meta)


def _wait(predicate: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("not in time")


def test_the_page_in_a_browser(tmp_path: Path, browser: object, procs: list[DaemonProcess]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver

    assert isinstance(browser, WebDriver)
    url = f"file://{tmp_path}/bucket/ranker"
    store = tmp_path / "store"
    _publish(tmp_path, url, 1, 0.81, owner="ranking team")
    config = tmp_path / "modelsync.toml"
    config.write_text(
        f'store = "{store}"\ninterval = "1s"\n[admin]\ntoken = "{TOKEN}"\n'
        f'[[models]]\nname = "ranker"\nsource = "{url}"\nmax_age = "30d"\n'
        "gate = { auc = 0.5 }\n"
    )
    daemon = DaemonProcess(["--config", str(config)], tmp_path / "daemon.log")
    procs.append(daemon)
    daemon.wait_http()
    current = store / "ranker" / "current"
    _wait(lambda: current.is_symlink() and os.readlink(current) == "1")
    _publish(tmp_path, url, 2, 0.84, None, note="weekly retrain", **{"trained on": "2026-11-22"})
    _wait(lambda: os.readlink(current) == "2")
    _publish(tmp_path, url, 3, 0.12)  # below the gate: refused before download
    _wait(lambda: b"gate: auc" in daemon.http("GET", "/status")[1])

    page = f"http://127.0.0.1:{daemon.port}/"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(page, timeout=5)
    assert refused.value.code == 401 and "Basic" in refused.value.headers["WWW-Authenticate"]
    refused.value.close()

    basic = base64.b64encode(f"ops:{TOKEN}".encode()).decode()
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd(
        "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {basic}"}}
    )
    browser.get(page)
    section = browser.find_element(By.ID, "model-ranker")
    text = section.text
    # What a person reads: the active version, its age, the retained one, the refusal.
    assert "active version 2" in text
    assert "revision age" in text and "(max_age 30.0 d)" in text
    assert "previous / retained 1" in text
    assert "version 3" in text and "gate: auc = 0.12 is below 0.5" in text
    # The revisions side by side, with the gate's bar.
    headers = [h.text for h in section.find_elements(By.CSS_SELECTOR, "table th.num")]
    assert "2\nactive" in headers and "1\nretained" in headers
    auc_row = section.find_element(By.XPATH, ".//tr[th='auc']").text
    # refused 3 (below the bar, marked), active 2, retained 1
    assert auc_row.split() == ["auc", "≥", "0.5", "0.12", "0.84", "0.81"]
    below = section.find_elements(By.CSS_SELECTOR, "td.below")
    assert [cell.text for cell in below] == ["0.12"]
    # History, newest first.
    history = section.find_element(By.XPATH, ".//h3[.='History']/following-sibling::table").text
    assert history.index("refused") < history.index("activated")
    # README's picture: a page as an operator sees it, before the hostile revision.
    assert "pwned" not in browser.page_source
    shot = tmp_path / "status-page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if os.environ.get("MODELSYNC_SCREENSHOT_DIR"):  # refresh the README's picture by hand
        shutil.copy(shot, Path(os.environ["MODELSYNC_SCREENSHOT_DIR"]) / "status-page.png")

    hostile_metric = {HOSTILE: 1.0}  # a metric name is any string a producer writes
    _publish(tmp_path, url, 4, 0.86, hostile_metric, note=HOSTILE)
    _wait(lambda: os.readlink(current) == "4")
    browser.get(page)
    text = browser.find_element(By.ID, "model-ranker").text
    # A hostile manifest (metadata and a metric name) is text, not markup.
    assert text.count(HOSTILE) == 2
    assert browser.execute_script("return window.__pwned") is None
    assert browser.find_elements(By.TAG_NAME, "script") == []


def test_render_escapes_everything_from_the_report() -> None:
    report = {
        "store": "/data/<b>",
        "models": [
            {
                "name": "m<i>",
                "source": "file:///<x>",
                "active_version": 2,
                "refused": {"3": HOSTILE},
                "revisions": [
                    {
                        "version": 2,
                        "role": "active",
                        "metrics": {HOSTILE: 1.0},
                        "metadata": {HOSTILE: HOSTILE},
                    },
                ],
                "gate": {},
                "history": [{"at": "t", "event": "refused", "version": 3, "reason": HOSTILE}],
                "server_reason": HOSTILE,
            }
        ],
    }
    html = render(report, "now").decode()
    assert "<script>" not in html and "<b>" not in html and "<i>" not in html
    assert html.count("&lt;script&gt;") >= 5


def test_render_shows_the_channel_target_and_why_not_on_it() -> None:
    """The page names what the channel asks for and why this host does not serve it."""
    channel = {
        "channel": "prod",
        "stable": 1,
        "canary": 2,
        "percent": 100.0,
        "in_cohort": True,
        "halted": False,
        "target": 2,
    }
    report = {
        "models": [
            {
                "name": "m",
                "active_version": 1,
                "channel": channel,
                "off_channel": "version 2 was refused here: gate: auc = 0.1 is below 0.5",
            }
        ]
    }
    html = render(report, "now").decode()
    assert "prod asks for 2: stable 1, canary 2 at 100 %" in html
    assert render({"models": [{"name": "m", "active_version": 1700000300}]}, "now").count(
        b"1700000300 (2023-11-14 22:18 UTC)"
    )
    assert "not on the channel&#x27;s version" in html
    assert "version 2 was refused here: gate: auc = 0.1 is below 0.5" in html


def test_render_shows_an_oms_signature_that_binds_no_version(tmp_path: Path) -> None:
    """A model on the oms_subject = "{model}" opt-out gets a warning badge and the
    config's own warning in a "signatures" row; the default binding shows neither."""
    from modelsync.checkconfig import VerifyConfig
    from tests.pki import ec_key

    _key, pub = ec_key(tmp_path, "k")
    unbound = VerifyConfig(oms_keys=(pub,), oms_subject="{model}")
    warning = unbound.oms_unbound_warning()
    assert warning is not None and VerifyConfig(oms_keys=(pub,)).oms_unbound_warning() is None
    verification = {"oms_version_bound": False, "warning": warning}
    model = {"name": "m", "active_version": 1, "verification": verification}
    html = render({"models": [model]}, "now").decode()
    assert "version not bound by its signature" in html
    assert "does not bind the version" in html
    model["verification"] = {"oms_version_bound": True, "warning": None}
    html = render({"models": [model]}, "now").decode()
    assert "not bound" not in html and "serving" in html


def test_render_shows_the_gate_rule_candidate_production_and_baseline() -> None:
    """The Gate table puts each rule beside the candidate's, production's and the
    baseline's value, with the failed rule's reason (modelsync.gates)."""
    from modelsync.gates import Sides, evaluate, parse_rules

    gates = parse_rules(
        ["ndcg@10 >= production - 0.005", "ndcg@10 >= baseline + 0.02"], 1, "refuse"
    )
    verdict = evaluate(
        gates, {"ndcg@10": 0.40}, Sides(2, {"ndcg@10": 0.42}, 1, {"ndcg@10": 0.37}), 3
    )
    report = {
        "models": [
            {
                "name": "m",
                "active_version": 2,
                "gates": {"rules": list(gates.rules), "last": verdict.as_dict()},
            }
        ]
    }
    html = render(report, "now").decode()
    assert "<h3>Gate</h3>" in html
    row = (
        "<tr><td>ndcg@10 &gt;= production - 0.005</td><td class='num'>0.4</td>"
        "<td class='num'>0.42</td><td class='num'>0.37</td><td class='bad'>gate "
    )
    assert row in html
    assert "<td class='num'>0.37</td><td>passed</td></tr>" in html
    assert '<th class="num">baseline<br><span class="muted">1</span></th>' in html


def test_render_shows_the_smoke_verdict_beside_the_metrics() -> None:
    """The side-by-side table has a smoke row: passed with its request count, failed with
    the difference (escaped), '-' for a revision without smoke requests."""
    failed = {"verdict": "failed", "requests": 1, "reason": "outputs[0] = nan <b>"}
    revisions = [
        {"version": 3, "role": "refused", "metrics": {}, "metadata": {}, "live": {"smoke": failed}},
        {
            "version": 2,
            "role": "active",
            "metrics": {},
            "metadata": {},
            "live": {"smoke": {"verdict": "passed", "requests": 4, "reason": ""}},
        },
        {"version": 1, "role": "retained", "metrics": {}, "metadata": {}, "live": None},
    ]
    report = {"models": [{"name": "m", "active_version": 2, "revisions": revisions, "gate": {}}]}
    html = render(report, "now").decode()
    row = html[html.index("<th>smoke</th>") :].split("</tr>")[0]
    assert "failed: outputs[0] = nan &lt;b&gt;" in row
    assert "passed (4 requests)" in row and "<td class='num muted'>-</td>" in row


def _figures(requests: int, error_ratio: float, latency: float) -> dict[str, object]:
    return {
        "requests": requests,
        "error_ratio": error_ratio,
        "latency_p50_s": None,
        "latency_p99_s": None,
        "latency_mean_s": latency,
        "window_s": 300.0,
    }


def _live_model(name: str, baking: bool) -> dict[str, object]:
    """One model of a /status report (the shape modelsync.status gives): v3 passed smoke
    and bakes (``baking``), or v3 failed its bake and v2 is served again."""
    smoke = {"smoke": {"verdict": "passed", "requests": 4, "reason": ""}}
    failed = {
        "verdict": "failed",
        "window_s": 300.0,
        "remaining_s": 0.0,
        "current": _figures(1000, 0.2, 0.012),
        "previous": _figures(1000, 0.01, 0.010),
        "reason": "bake failed over 1000 requests: error ratio 0.2000 (previous 0.0100)",
    }
    v3 = {"version": 3, "role": "active" if baking else "refused"}
    revisions: list[dict[str, Any]] = [
        {**v3, "metrics": {"auc": 0.84}, "metadata": {}, "live": smoke},
        {"version": 2, "role": "retained" if baking else "active", "metrics": {"auc": 0.82}},
    ]
    for revision in revisions:
        revision.setdefault("metadata", {})
        revision.setdefault("live", None)
        revision["bake"] = None if baking or revision["version"] == 2 else failed
    bake = {
        "version": 3,
        "previous": 2,
        "started_at": "2026-12-05T09:00:00Z",
        "ends_at": "2026-12-05T09:05:00Z",
        "remaining_s": 180.0,
        "verdict": "baking",
        "reason": "",
        "previous_figures": _figures(1000, 0.01, 0.010),
        "figures": _figures(600, 0.012, 0.011),
    }
    return {
        "name": name,
        "server": "triton",
        "active_version": 3 if baking else 2,
        "revisions": revisions,
        "gate": {},
        "bake": bake if baking else None,
        "refused": {} if baking else {"3": failed["reason"]},
    }


def test_the_bake_in_a_browser(tmp_path: Path, browser: object) -> None:
    """In Chromium: a revision that passed smoke and bakes shows the time left and its
    figures so far beside the previous revision's; one that failed its bake shows the
    verdict and its figures beside the previous revision's. The screenshot is
    docs/bake.md's picture."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver

    assert isinstance(browser, WebDriver)
    browser.set_window_size(1200, 1800)  # both models whole in the picture
    page = tmp_path / "live.html"
    models = [_live_model("ranker", True), _live_model("scorer", False)]
    page.write_bytes(render({"store": "/models", "models": models}, "2026-12-05T09:02:00Z"))
    browser.get(f"file://{page}")
    texts = [browser.find_element(By.ID, f"model-{m}").text for m in ("ranker", "scorer")]
    baking_text, failed_text = texts
    assert "passed (4 requests)" in baking_text
    assert "180 s left, until 2026-12-05T09:05:00Z" in baking_text
    assert (
        "so far 600 requests, error ratio 1.20 %, latency mean 11.0 ms; "
        "previous revision 1,000 requests, error ratio 1.00 %, latency mean 10.0 ms"
    ) in baking_text
    section = browser.find_element(By.ID, "model-scorer")
    verdicts = section.find_element(By.XPATH, ".//tr[th='bake verdict']").text
    assert verdicts.split() == ["bake", "verdict", "live", "failed", "-"]
    errors = section.find_element(By.XPATH, ".//tr[th='error ratio (bake)']").text
    assert "20.00 %" in errors and "prev 1.00 %" in errors
    assert "error ratio 0.2000 (previous 0.0100)" in failed_text
    shot = tmp_path / "status-page-live.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if os.environ.get("MODELSYNC_SCREENSHOT_DIR"):  # refresh docs/bake.md's picture by hand
        shutil.copy(shot, Path(os.environ["MODELSYNC_SCREENSHOT_DIR"]) / "status-page-live.png")
