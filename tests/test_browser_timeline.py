"""The SMART treatment timeline in a real browser: headless Chromium driven by Selenium (#10).

The service runs under uvicorn on a random port with its embedded demo FHIR server. Each test
launches the app as an EHR would: the `smart` link of a card the service returned, with `iss` (the
FHIR base) and an opaque `launch` appended. Screenshots go to tests/artifacts/ (git-ignored).

Skipped when Chromium or chromedriver is missing locally; a failure when CI=true (`.ci/run`
installs Debian's `chromium` and `chromium-driver`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from app.demo import demo_request

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).parent / "artifacts"
ROOT = Path(__file__).resolve().parent.parent
THRESHOLD_LABELS = ("ANC 1 x10^9/L", "Platelets 50 x10^9/L", "Bilirubin 1.5 x ULN", "AST/ALT 2.5 x ULN")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests cannot run in CI: {reason}")
    pytest.skip(reason)


def test_a_missing_browser_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        _unavailable("no chromium")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        _unavailable("no chromium")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _serving(cmd: list[str], *, cwd: Path, env: dict[str, str], ready_url: str, name: str,
             timeout: float, interval: float, request_timeout: float) -> Iterator[None]:
    """Runs `cmd` until the block ends; enters once `ready_url` answers 200 (fails the test with
    the process's stderr if it exits or `timeout` passes first)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(ready_url, timeout=request_timeout).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"{name} did not start: {err[-2000:]}")
            time.sleep(interval)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    db = Path(tmp_path_factory.mktemp("db")) / "cards.db"
    env = {**os.environ, "BESPONSA_PUBLIC_BASE_URL": base, "BESPONSA_DATABASE_URL": f"sqlite:///{db}",
           "BESPONSA_LOG_LEVEL": "WARNING"}
    with _serving([sys.executable, "-m", "uvicorn", "app.http.app:create_app", "--factory",
                   "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                  cwd=ROOT, env=env, ready_url=f"{base}/healthz", name="uvicorn",
                  timeout=60, interval=0.2, request_timeout=1):
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed (pip install -e '.[dev]')")
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        _unavailable(f"{CHROMIUM} or {CHROMEDRIVER} not found (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="besponsa-chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1500", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _card_link(base: str, demo: str) -> str:
    """The smart link of the first card the service returns for the demo patient's order."""
    r = httpx.post(f"{base}/cds-services/besponsa-order-sign", json=demo_request(demo, datetime.now(UTC), base),
                   timeout=30)
    assert r.status_code == 200, r.text
    links = [link for link in r.json()["cards"][0]["links"] if link.get("type") == "smart"]
    assert len(links) == 1
    return links[0]["url"]


def _ehr_launch(driver: Any, base: str, link: str) -> None:
    """Open the link as the CDS Hooks sandbox does: a launch id from the FHIR server's
    `_services/smart/Launch`, then the link with `launch` and `iss` (= the FHIR base) appended."""
    r = httpx.post(f"{base}/fhir/_services/smart/Launch", timeout=10,
                   json={"launchUrl": link, "parameters": {"patient": "ignored-by-the-open-demo-server"}})
    assert r.status_code == 200, r.text
    sep = "&" if "?" in link else "?"
    driver.get(link + sep + urlencode({"launch": r.json()["launch_id"], "iss": f"{base}/fhir"}))


def _wait_ready(driver: Any, timeout: float = 45) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = driver.execute_script("return document.body && document.body.dataset.ready")
        if state:
            return state
        time.sleep(0.25)
    return "timeout"


def _timeline_json(base: str, patient: str) -> dict[str, Any]:
    from app.demo import load_patient

    r = httpx.post(f"{base}/smart/timeline", timeout=30,
                   json={"patientId": patient, "resources": load_patient(patient, datetime.now(UTC))})
    assert r.status_code == 200, r.text
    return r.json()


def _screenshot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def _svg_texts(driver: Any) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#chart svg text')).map(t => t.textContent)")


def _assert_timeline(driver: Any, base: str, patient: str) -> dict[str, Any]:
    state = _wait_ready(driver)
    shot = _screenshot(driver, f"timeline-{patient}")
    status = driver.find_element("id", "status").text
    assert state == "true", f"timeline not shown ({state}): {status!r}; screenshot {shot}"
    expected = _timeline_json(base, patient)
    page = driver.find_element("tag name", "main").text
    assert f"Patient {patient}" in page
    # Every dose given: cycle, day, mg, in the table and on the chart.
    rows = driver.find_elements("css selector", "#dose-table tbody tr")
    assert len(rows) == len(expected["doses"]) > 0
    for row, dose in zip(rows, expected["doses"], strict=True):
        cells = [c.text for c in row.find_elements("tag name", "td")]
        assert cells[:4] == [dose["date"], f"Cycle {dose['cycle']}", f"Day {dose['day']}", f"{dose['mg']:g}"]
    texts = _svg_texts(driver)
    for dose in expected["doses"]:
        # a multi-line label: "C1 D8", mg/m2, mg (tspans, concatenated in textContent)
        label = f"C{dose['cycle']} D{dose['day']}"
        assert any(t.startswith(label) and t.endswith(f"{dose['mg']:g} mg") for t in texts), label
    for label in THRESHOLD_LABELS:
        assert label in texts, label
    for span in expected["spans"]:  # holds, interruptions, omitted doses: each drawn and labelled
        assert span["label"] in texts, span["label"]
    if expected["nextDose"]:
        n = expected["nextDose"]
        assert any(t.startswith(f"Next dose: C{n['cycle']} D{n['day']}") for t in texts)
        assert f"Next dose: Cycle {n['cycle']} Day {n['day']}" in driver.find_element("id", "next-dose").text
    # Today's decision with its rule ids, exactly as the engine returned it.
    box = driver.find_element("id", "todays-decision").text
    today = expected["todaysDecision"]
    if today:
        assert f"Today: {today['display']}" in box and "Rules " + ", ".join(today["rules"]) in box
    else:
        assert "No decision today" in box
    return expected


def test_ehr_launch_from_a_card_shows_the_neutropenia_course(browser: Any, base_url: str) -> None:
    link = _card_link(base_url, "neutropenia")
    _ehr_launch(browser, base_url, link)
    expected = _assert_timeline(browser, base_url, "demo-neutropenia")
    assert [(d["cycle"], d["day"]) for d in expected["doses"]] == [(1, 1), (1, 8), (1, 15)]
    # The ANC of 0.6 x10^9/L below the 1 x10^9/L line is drawn (a point per result).
    anc = [lab for lab in expected["labs"] if lab["analyte"] == "anc"]
    assert any(lab["value"] < 1 for lab in anc)


def test_ehr_launch_shows_the_hepatic_hold_with_its_rules(browser: Any, base_url: str) -> None:
    _ehr_launch(browser, base_url, _card_link(base_url, "hepatic"))
    expected = _assert_timeline(browser, base_url, "demo-hepatic")
    assert expected["todaysDecision"]["code"] == "hold" and "L-2" in expected["todaysDecision"]["rules"]
    assert "Hold" in _svg_texts(browser)  # the hold lane
    box = browser.find_element("id", "todays-decision").text
    assert "Today: Hold dosing" in box and "L-2" in box


def test_ehr_launch_shows_the_interruption_course(browser: Any, base_url: str) -> None:
    _ehr_launch(browser, base_url, _card_link(base_url, "interruption"))
    expected = _assert_timeline(browser, base_url, "demo-interruption")
    assert [(d["cycle"], d["day"]) for d in expected["doses"]] == [(1, 1), (1, 8), (1, 15)]
    anc = [lab["value"] for lab in expected["labs"] if lab["analyte"] == "anc"]
    assert min(anc) < 1 < anc[-1]  # the ANC dip below 1 x10^9/L and the recovery


def test_landing_page_timeline_link_opens_the_demo_patient(browser: Any, base_url: str) -> None:
    browser.get(f"{base_url}/")
    link = browser.find_element("css selector", "a[href*='patientId=demo-vod'][href*='/smart/launch.html']")
    link.click()
    expected = _assert_timeline(browser, base_url, "demo-vod")
    assert expected["todaysDecision"]["code"] == "discontinue"
    assert "Today: Discontinue inotuzumab ozogamicin" in browser.find_element("id", "todays-decision").text


def test_standalone_launch_asks_for_the_fhir_server(browser: Any, base_url: str) -> None:
    browser.get(f"{base_url}/smart/launch.html")
    deadline = time.monotonic() + 20
    form = browser.find_element("id", "standalone")
    while not form.is_displayed() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert form.is_displayed()
    assert browser.find_element("id", "iss").get_attribute("value") == f"{base_url}/fhir"


def test_a_launch_against_a_server_that_is_not_fhir_says_so(browser: Any, base_url: str) -> None:
    browser.get(f"{base_url}/smart/launch.html?" + urlencode({"iss": f"{base_url}/not-fhir", "launch": "x"}))
    deadline = time.monotonic() + 20
    status = ""
    while time.monotonic() < deadline:
        status = browser.find_element("id", "status").text
        if "failed" in status or "could not" in status:
            break
        time.sleep(0.25)
    _screenshot(browser, "launch-not-fhir")
    assert "failed" in status or "could not be shown" in status, status


# --------------------------------------------------------------------------- SMART launcher
# A real SMART authorization server: the SMART launcher (smart-on-fhir/smart-launcher-v2). It is not
# published on the npm registry, so these tests run only when BESPONSA_SMART_LAUNCHER_DIR names a
# checkout with its backend dependencies installed (docs/smart-launcher.md); they skip otherwise,
# in CI too. The launcher proxies its FHIR endpoint to the service's embedded demo server.

LAUNCHER_ENV = "BESPONSA_SMART_LAUNCHER_DIR"


@pytest.fixture(scope="module")
def launcher(base_url: str) -> Iterator[str]:
    root = os.environ.get(LAUNCHER_ENV)
    if not root:
        pytest.skip(f"{LAUNCHER_ENV} is not set (SMART launcher checkout; see docs/smart-launcher.md)")
    ts_node = Path(root) / "node_modules" / ".bin" / "ts-node"
    if not ts_node.exists() or not shutil.which("node"):
        pytest.fail(f"{LAUNCHER_ENV}={root} has no node_modules/.bin/ts-node (or node is missing)")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "FHIR_SERVER_R4": f"{base_url}/fhir",
           "FHIR_SERVER_R2": "", "FHIR_SERVER_R3": ""}
    with _serving([str(ts_node), "--skipProject", "--transpile-only", "backend/index.ts"],
                  cwd=Path(root), env=env, ready_url=f"{url}/v/r4/fhir/.well-known/smart-configuration",
                  name="SMART launcher", timeout=90, interval=0.3, request_timeout=2):
        yield url


def _launch_code(launch_type: int, patient: str, *, pkce: int = 2, auth_error: str = "") -> str:
    """The launcher's launch parameters (src/isomorphic/codec.ts): base64url of a JSON array.
    launch_type 0 = provider-ehr, 2 = provider-standalone; pkce 2 = "always" (S256 required);
    skip_login and skip_auth set (its login and consent pages are a UI not installed here)."""
    import base64
    import json

    arr = [launch_type, patient, "prov-1", "NONE", 1, 1, 0, "", "", "", "", auth_error, "", "", 0, pkce, ""]
    return base64.urlsafe_b64encode(json.dumps(arr).encode()).decode().rstrip("=")


def test_ehr_launch_through_a_smart_authorization_server(browser: Any, base_url: str, launcher: str) -> None:
    """EHR launch: iss + launch -> authorize (PKCE S256, required) -> token -> FHIR via the launcher."""
    iss = f"{launcher}/v/r4/fhir"
    browser.get(f"{base_url}/smart/launch.html?" + urlencode({"iss": iss, "launch": _launch_code(0, "demo-hepatic")}))
    expected = _assert_timeline(browser, base_url, "demo-hepatic")
    assert f"FHIR server {iss}" in browser.find_element("id", "context").text
    assert expected["todaysDecision"]["code"] == "hold"
    _screenshot(browser, "launcher-ehr-demo-hepatic")


def test_standalone_launch_through_a_smart_authorization_server(browser: Any, base_url: str,
                                                                launcher: str) -> None:
    """Standalone: iss only; the authorization server supplies the patient (launch/patient)."""
    iss = f"{launcher}/v/r4/sim/{_launch_code(2, 'demo-neutropenia')}/fhir"
    browser.get(f"{base_url}/smart/launch.html?" + urlencode({"iss": iss}))
    _assert_timeline(browser, base_url, "demo-neutropenia")


def test_an_authorization_error_is_said_not_drawn(browser: Any, base_url: str, launcher: str) -> None:
    iss = f"{launcher}/v/r4/fhir"
    code = _launch_code(0, "demo-hepatic", auth_error="auth_invalid_client_id")
    browser.get(f"{base_url}/smart/launch.html?" + urlencode({"iss": iss, "launch": code}))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "index.html" not in browser.current_url:
        time.sleep(0.25)
    state = _wait_ready(browser, 30)
    status = browser.find_element("id", "status").text
    _screenshot(browser, "launcher-auth-error")
    assert state == "error" and "could not be shown: invalid_client" in status, status
