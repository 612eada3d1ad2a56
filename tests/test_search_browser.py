"""End to end in a real browser: the real server (search/02_serve.py in a subprocess on a free
127.0.0.1 port) and the page in headless Chromium driven by selenium.

It types a query, clicks a result to add it (then a second one), checks that the results
change each time, searches with an uploaded file, shows an unknown word with its
suggestions, and saves a screenshot. Skips, with the reason, without selenium, Chromium or
chromedriver (Debian: ``apt-get install chromium chromium-driver``; ``pip install selenium``).

By default it serves a tiny index built for the test. ``TTN_SEARCH_INDEX=runs/demo/search``
runs it on another index, ``TTN_SCREENSHOT=docs/search_page.png`` also keeps the screenshot
there and ``TTN_SCREENSHOT_QUERY`` chooses the query it shows (how the README's picture is made).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import test_search_helpers as h

from texttopicnet.search.process import ServerProcess

CHROMIUM = next((p for p in (os.environ.get("CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium",
                             shutil.which("chromium-browser"), shutil.which("google-chrome"))
                 if p and Path(p).is_file()), None)
DRIVER = next((p for p in (os.environ.get("CHROMEDRIVER"), shutil.which("chromedriver"), "/usr/bin/chromedriver")
               if p and Path(p).is_file()), None)
WAIT_S = 60          # page work is milliseconds; generous for a loaded CI machine
SERVER_START_S = 300  # importing torch + gensim on a busy 2-core machine


def _skip_reason() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    if CHROMIUM is None:
        return "no Chromium browser found (Debian: apt-get install chromium)"
    if DRIVER is None:
        return "no chromedriver found (Debian: apt-get install chromium-driver)"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


def make_driver(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--window-size=1280,900"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("browser")
    index = Path(os.environ.get("TTN_SEARCH_INDEX") or h.tiny_index())
    # The test waits for it after Chromium started (both take seconds).
    with ServerProcess(index, base / "server.log") as srv:
        yield srv


@pytest.fixture
def driver(tmp_path):
    d = make_driver(tmp_path / "profile")
    d.set_page_load_timeout(WAIT_S)
    try:
        yield d
    finally:
        d.quit()


def searches_done(driver, n: int):
    """Wait until the page finished its n-th search; returns its state ("done" or "error")."""
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d):
        s = d.find_element("id", "status")
        return s.get_attribute("data-state") if int(s.get_attribute("data-searches")) >= n and \
            s.get_attribute("data-state") in ("done", "error") else False
    return WebDriverWait(driver, WAIT_S).until(ready)


def results(driver) -> list[tuple[str, str]]:
    return [(e.get_attribute("data-id"), e.get_attribute("data-distance"))
            for e in driver.find_elements("css selector", "#results .result")]


def chips(driver) -> list[tuple[str, str, str]]:
    return [(e.get_attribute("data-kind"), e.get_attribute("data-value"), e.get_attribute("data-known"))
            for e in driver.find_elements("css selector", "#terms .chip")]


def test_search_click_combine_upload_in_chromium(server, driver, tmp_path):
    import httpx
    from selenium.webdriver.common.keys import Keys

    url = server.url
    server.wait_healthy(SERVER_START_S)
    info = httpx.get(url + "/api/info", timeout=10).json()
    w0, w1 = info["example_words"][:2]
    driver.get(url + "/")
    box = driver.find_element("id", "q")
    box.send_keys(f"{w0} + {w1}", Keys.ENTER)
    assert searches_done(driver, 1) == "done"
    first = results(driver)
    assert len(first) == min(24, info["images"]) and chips(driver) == [("word", w0, "true"), ("word", w1, "true")]

    # click a result: it joins the query, the results change
    driver.find_elements("css selector", "#results .result")[-1].click()
    assert searches_done(driver, 2) == "done"
    clicked = first[-1][0]
    assert box.get_attribute("value") == f"{w0} + {w1} + [img:{clicked}]"
    second = results(driver)
    assert second != first and ("image", clicked, "true") in chips(driver)

    # several images combine: subtract another one with its minus button
    other = driver.find_elements("css selector", "#results .result")[1]
    other_id = other.get_attribute("data-id")
    other.find_element("css selector", "button.minus").click()
    assert searches_done(driver, 3) == "done"
    third = results(driver)
    assert third != second and len([c for c in chips(driver) if c[0] == "image"]) == 2 - (other_id == clicked)

    # an unknown word is shown as such, with suggestions; nothing is searched on a guess
    box.clear()
    box.send_keys(w0[:-1] + "qq" + w0[-1] + " + " + w1, Keys.ENTER)
    assert searches_done(driver, 4) == "error"
    assert "unknown word" in driver.find_element("id", "error").text
    assert [c[2] for c in chips(driver)] == ["false", "true"]
    assert results(driver) == third  # the last good results stay on the page

    # query by an uploaded file (the file input; dropping a file uses the same path)
    box.clear()
    upload = tmp_path / "query.png"
    h.write_images(tmp_path / "up", 1, seed=7)
    shutil.copy(next((tmp_path / "up").rglob("*.png")), upload)
    driver.find_element("id", "file").send_keys(str(upload))
    assert searches_done(driver, 5) == "done"
    assert chips(driver)[0][:2] == ("image", "@upload") and len(results(driver)) > 0

    # the screenshot: the word + clicked-image query again, with its results
    driver.find_element("css selector", "#terms .chip .x").click()  # stop searching with the upload
    assert driver.find_element("id", "status").get_attribute("data-state") == "idle"  # empty query: nothing runs
    assert results(driver) == [] and chips(driver) == []
    final = os.environ.get("TTN_SCREENSHOT_QUERY") or f"{w0} + {w1} + [img:{clicked}]"
    box.send_keys(final, Keys.ENTER)
    assert searches_done(driver, 6) == "done"
    shot = tmp_path / "search_page.png"
    driver.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    if os.environ.get("TTN_SCREENSHOT"):
        shutil.copy(shot, os.environ["TTN_SCREENSHOT"])
    assert server.running()  # the server is still up
    assert httpx.get(url + "/api/health", timeout=10).json()["status"] == "ok"
