"""The web page in a real browser: headless Chromium against a real ``ganforge serve``.

Starts the server as a user would (a subprocess on a free loopback port), types a prompt and
gets images, uploads an image and gets it translated. Skipped, saying why, where Chromium or
chromedriver is not installed (``apt-get install chromium chromium-driver``).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="headless browser test needs chromium and chromedriver "
           "(apt-get install chromium chromium-driver)")

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")

from conftest import stop_process  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402
from test_serve import save_tiny_models  # noqa: E402  (tests/ is on sys.path)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``ganforge serve`` with tiny models on a free loopback port; yields its base URL."""
    t2i, cyc = save_tiny_models(tmp_path_factory.mktemp("browser-models"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "ganforge.cli", "serve", "--model", f"tiny={t2i}",
         "--translator", f"shapes={cyc}", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline, url, seen = time.monotonic() + 60, None, []
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()  # type: ignore[union-attr]
            if not line and process.poll() is not None:
                break
            seen.append(line)
            match = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
            url = match.group(1) if match else None
        assert url, f"ganforge serve did not start: {''.join(seen)[-2000:]}"
        yield url
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="ganforge-chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--window-size=1200,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER),
                              options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_prompt_gives_images_and_upload_gets_translated(
        server: str, browser: object, tmp_path: Path) -> None:
    driver = browser
    wait = WebDriverWait(driver, 30)
    driver.get(server + "/")  # type: ignore[attr-defined]
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "status"), "ready"))
    # the tiny DF-GAN takes no skin_tones setting: the page offers no "Vary skin tones" box
    assert not driver.find_element(By.ID, "tones-box").is_displayed()  # type: ignore[attr-defined]

    prompt = driver.find_element(By.ID, "prompt")  # type: ignore[attr-defined]
    prompt.send_keys("a red circle")
    count = driver.find_element(By.ID, "count")  # type: ignore[attr-defined]
    count.clear()
    count.send_keys("3")
    driver.find_element(By.ID, "seed").send_keys("5")  # type: ignore[attr-defined]
    driver.find_element(By.ID, "generate-btn").click()  # type: ignore[attr-defined]
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#gallery img")) == 3)
    images = driver.find_elements(By.CSS_SELECTOR, "#gallery img")  # type: ignore[attr-defined]
    assert all(img.get_attribute("src").startswith("data:image/png;base64,") for img in images)
    assert all(img.get_property("naturalWidth") == 16 for img in images)
    links = driver.find_elements(By.CSS_SELECTOR, "#gallery a[download]")  # type: ignore
    assert [link.get_attribute("download") for link in links] == [
        f"a-red-circle_s5_{j}.png" for j in range(3)]
    seed = driver.find_element(By.ID, "seed")  # type: ignore[attr-defined]
    assert seed.get_attribute("placeholder") == "random"  # short: never cut off
    assert driver.find_element(By.ID, "last-seed").text == "last: 5"  # type: ignore
    assert len(driver.find_elements(By.CSS_SELECTOR, "#gallery .card-link")) == 3  # type: ignore

    upload = tmp_path / "drawing.png"
    Image.new("RGB", (40, 40), (20, 120, 220)).save(upload)
    driver.find_element(By.ID, "tab-translate").click()  # type: ignore[attr-defined]
    driver.find_element(By.ID, "translate-file").send_keys(str(upload))  # type: ignore
    direction = driver.find_element(By.ID, "translate-direction")  # type: ignore
    assert [o.text for o in direction.find_elements(By.TAG_NAME, "option")] == ["a2b", "b2a"]
    driver.find_element(By.ID, "translate-btn").click()  # type: ignore[attr-defined]
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#translate-result img")) == 2)
    result = driver.find_elements(By.CSS_SELECTOR, "#translate-result img")[1]  # type: ignore
    assert result.get_attribute("src").startswith("data:image/png;base64,")
    assert result.get_property("naturalWidth") == 16
    assert "shapes" in driver.find_element(By.ID, "translate-result").text  # type: ignore

    driver.find_element(By.ID, "tab-generate").click()  # type: ignore[attr-defined]
    prompt.clear()
    prompt.send_keys("   ")  # passes the form's 'required'; the server says what is wrong
    driver.find_element(By.ID, "generate-btn").click()  # type: ignore[attr-defined]
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "status"),
                                                                 "prompt is empty"))
    status = driver.find_element(By.ID, "status")  # type: ignore[attr-defined]
    assert "error" in status.get_attribute("class")


def _overflow(driver: object) -> str:
    """What sticks out past the viewport's right edge ('' when nothing does)."""
    script = """
        const width = document.documentElement.clientWidth;
        if (document.documentElement.scrollWidth <= width) return "";
        return [...document.querySelectorAll("body *")]
          .filter((e) => e.getBoundingClientRect().right > width + 0.5)
          .map((e) => `${e.tagName}#${e.id}.${e.className}`).slice(0, 8).join(", ")
          || `scrollWidth ${document.documentElement.scrollWidth} > ${width}`;
    """
    return driver.execute_script(script)  # type: ignore[attr-defined]


def test_x4_card_and_verify_in_words_and_nothing_overflows_at_375px(
        server: str, browser: object, tmp_path: Path) -> None:
    driver = browser
    # the page re-renders the result it waits on: an element found a moment ago may be gone
    wait = WebDriverWait(driver, 60, ignored_exceptions=(StaleElementReferenceException,))
    # mobile=False: a phone browser would widen its layout viewport to fit what overflows
    # (hiding it from scrollWidth); a fixed 375 px viewport shows it
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {  # type: ignore
        "width": 375, "height": 812, "deviceScaleFactor": 1, "mobile": False})
    try:
        driver.get(server + "/")  # type: ignore[attr-defined]
        wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "status"),
                                                                     "ready"))
        assert driver.execute_script("return window.innerWidth") == 375  # type: ignore
        assert _overflow(driver) == ""
        driver.find_element(By.ID, "prompt").send_keys("a red circle")  # type: ignore
        driver.find_element(By.ID, "seed").send_keys("2147483647")  # type: ignore
        driver.find_element(By.ID, "generate-btn").click()  # type: ignore[attr-defined]
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#gallery img")) == 4)
        assert _overflow(driver) == ""

        # x4 next to an image: the upscaler's result appears right after it
        first = driver.find_element(By.CSS_SELECTOR, "#gallery figure")  # type: ignore
        src = first.find_element(By.TAG_NAME, "img").get_attribute("src")
        first.find_element(By.CSS_SELECTOR, "button.x4").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#gallery figure.upscaled img"))
        big = driver.find_element(By.CSS_SELECTOR, "#gallery figure.upscaled")  # type: ignore
        wait.until(lambda d: big.find_element(By.TAG_NAME, "img").get_property(
            "naturalWidth") == 64)
        assert driver.execute_script(  # type: ignore[attr-defined]
            "return arguments[0].previousElementSibling === arguments[1]", big, first)
        assert _overflow(driver) == ""

        # which model card applies: the upscaler's opens in a dialog
        big.find_element(By.CSS_SELECTOR, "a.card-link").click()
        wait.until(lambda d: d.find_element(By.ID, "card-dialog").get_attribute("open"))
        assert "#" in driver.find_element(By.ID, "card-text").text  # type: ignore
        assert _overflow(driver) == ""
        driver.find_element(By.ID, "card-close").click()  # type: ignore[attr-defined]

        # Verify: the verdict in words first, the evidence under it
        made = tmp_path / "made.png"
        made.write_bytes(base64.b64decode(src.split(",", 1)[1]))
        driver.find_element(By.ID, "tab-verify").click()  # type: ignore[attr-defined]
        driver.find_element(By.ID, "verify-file").send_keys(str(made))  # type: ignore
        driver.find_element(By.ID, "verify-btn").click()  # type: ignore[attr-defined]
        wait.until(lambda d: d.find_elements(By.ID, "verdict"))
        result = driver.find_element(By.ID, "verify-result")  # type: ignore[attr-defined]
        children = result.find_elements(By.XPATH, "./*")
        assert children[0].get_attribute("id") == "verdict"
        assert children[0].text == "Generated by ganforge"
        assert "watermark" in result.find_element(By.CSS_SELECTOR, "dl.evidence").text
        assert "{" not in result.text.split("raw answer")[0]  # no raw JSON before the words
        assert _overflow(driver) == ""
        notes = tmp_path / "notes.txt"
        notes.write_text("not an image")
        driver.find_element(By.ID, "verify-file").send_keys(str(notes))  # type: ignore
        driver.find_element(By.ID, "verify-btn").click()  # type: ignore[attr-defined]
        wait.until(lambda d: d.find_element(By.ID, "verdict").text == "Unknown")

        for tab in ("translate", "upscale"):
            driver.find_element(By.ID, f"tab-{tab}").click()  # type: ignore[attr-defined]
            assert _overflow(driver) == "", tab
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})  # type: ignore
