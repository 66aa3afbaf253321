"""`vdm ui` in a real browser: Debian's headless Chromium driven by selenium through the system
chromedriver (nothing is downloaded at run time). It loads the page, runs one prompt on two models
in two modes side by side and sees both videos play, runs a 3-value sweep and sees its grid, and
sees the command's own error line for invalid input; screenshots are kept as test artifacts
(outputs/test-artifacts/, or $VDM_TEST_ARTIFACTS).

Without the browser the test is skipped, unless VDM_REQUIRE_BROWSER=1 (set by .ci/run, which
installs it): then its absence fails.
"""
import os
import tempfile
import threading

import pytest

from tests.tiny_models import random_model_dir

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS = os.environ.get("VDM_TEST_ARTIFACTS", os.path.join(ROOT, "outputs", "test-artifacts"))
# Flags that let Chromium run as root on a machine without a display or a network.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,1500")
PLAYING = ("const v = document.querySelector(arguments[0]);"
           "return !!v && v.readyState >= 2 && !v.paused && v.currentTime > 0 && !v.error;")


def _browser_missing() -> list[str]:
  missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
  try:
    import selenium  # noqa: F401
  except ImportError:
    missing.append("the selenium package (pip install -e '.[test]')")
  return missing


@pytest.fixture(scope="module")
def browser():
  missing = _browser_missing()
  if missing:
    message = (f"needs {missing}: apt-get install -y chromium chromium-driver (.ci/run installs "
               "them)")
    if os.environ.get("VDM_REQUIRE_BROWSER") == "1":
      pytest.fail(message)
    pytest.skip(message)
  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for flag in FLAGS:
    options.add_argument(flag)
  profile = tempfile.mkdtemp(prefix="vdm-chromium-")
  options.add_argument(f"--user-data-dir={profile}")
  driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
  yield driver
  driver.quit()


@pytest.fixture(scope="module")
def page(tmp_path_factory):
  from vdm.ui.jobs import Runner
  from vdm.ui.server import make_server
  os.environ["VDM_NO_PROGRESS"] = "1"
  root = tmp_path_factory.mktemp("browser")
  models = [random_model_dir(str(root / name), seed) for name, seed in (("a", 1), ("b", 2))]
  runner = Runner(str(root / "out"), models)
  server = make_server(runner, "127.0.0.1", 0)
  threading.Thread(target=server.serve_forever, kwargs=dict(poll_interval=0.05),
                   daemon=True).start()
  yield f"http://127.0.0.1:{server.server_address[1]}/", models
  server.shutdown()
  server.server_close()
  runner.close()


def _type(driver, element_id: str, text: str) -> None:
  field = driver.find_element("id", element_id)
  field.clear()
  field.send_keys(text)


def _select(driver, element_id: str, value: str) -> None:
  from selenium.webdriver.support.ui import Select
  Select(driver.find_element("id", element_id)).select_by_value(value)


def _until(driver, script: str, *args, timeout: float = 600):
  from selenium.webdriver.support.ui import WebDriverWait
  return WebDriverWait(driver, timeout, poll_frequency=0.1).until(
      lambda d: d.execute_script(script, *args))


def _screenshot(driver, name: str) -> str:
  os.makedirs(ARTIFACTS, exist_ok=True)
  path = os.path.join(ARTIFACTS, name)
  assert driver.save_screenshot(path), path
  return path


def test_page_in_chromium_side_by_side_sweep_and_error(browser, page):
  url, models = page
  driver = browser
  driver.get(url)
  _until(driver, "return document.getElementById('pane-b-model').options.length === 3")
  assert "vdm" in driver.title

  # One prompt, two models, two modes, side by side: both videos play.
  _type(driver, "steps", "2")
  _select(driver, "pane-a-model", models[0])
  _select(driver, "pane-b-model", models[1])
  _select(driver, "pane-b-mode", "autoregressive")
  driver.find_element("id", "run-compare").click()
  for pane in ("#result-a video", "#result-b video"):
    _until(driver, PLAYING, pane)
  right = driver.find_element("id", "result-b").text
  assert "autoregressive" in right and "generate" in right and "vdm sample" in right
  assert driver.find_element("id", "error").get_attribute("hidden") is not None

  # A sweep of three guidance values: three clips play and the grid image loads.
  _select(driver, "sweep-axis", "guidance")
  _type(driver, "sweep-values", "1,3,5")
  driver.find_element("id", "run-sweep").click()
  _until(driver, "return document.querySelectorAll('#sweep video').length === 3")
  for i in range(1, 4):
    _until(driver, PLAYING, f"#sweep figure:nth-child({i}) video")
  _until(driver, "const g = document.getElementById('grid-png');"
                 "return g.complete && g.naturalWidth > 0;")
  captions = [c.text for c in driver.find_elements("css selector", "#sweep figcaption")]
  assert [c.split(" ")[0] for c in captions] == ["guidance=1", "guidance=3", "guidance=5"]
  _screenshot(driver, "ui_side_by_side_and_sweep.png")

  # Invalid input shows the command's own error line: refused at once (argparse) ...
  _type(driver, "steps", "many")
  driver.find_element("id", "run-compare").click()
  _until(driver, "return !document.getElementById('error').hidden")
  assert driver.find_element("id", "error").text == (
      "vdm sample: error: argument --steps: invalid int value: 'many'")
  # ... or when the model checks the request.
  _type(driver, "steps", "0")
  driver.find_element("id", "run-compare").click()
  _until(driver, "return document.getElementById('error').textContent.includes('[1, 1000]')")
  assert driver.find_element("id", "error").text == (
      "vdm sample: error: --steps 0 must be an integer in [1, 1000]")
  _screenshot(driver, "ui_error.png")
