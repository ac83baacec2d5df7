"""sqlcoder-web in a real browser: headless Debian chromium through chromedriver, the real
``sqlcoder-web`` command, a throwaway cluster that asks for passwords, the real daemon and demo model.

One server and one browser serve the whole module; the tests run in file order
(log in first). Each behaviour of the page is checked at a desktop (1280 px) and a
phone (390 px) width. Set ``SQLCODER_WEB_SCREENSHOTS=docs`` to save the
screenshots the docs show (``web-desktop.png``, ``web-phone.png``, ``web-conversation.png``).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from helpers.paths import ROOT
from plugins.postgres import SHOP_TEMPLATE, configure_socket
from sqlcoder_dev import shop
from sqlcoder_dev.fake_daemon import FakeDaemon, socket_dir
from sqlcoder_dev.pgcluster import Cluster
from sqlcoder_dev.web_demo import grant_reader, require_password
from sqlcoder_web import auth, db

PASSWORD = "s3cret 'quoted\" pass"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
QUESTION = shop.sample_questions()[1]  # the 5 most expensive products: a category and a number
WIDTHS = {"desktop": 1280, "phone": 390}


@pytest.fixture(params=list(WIDTHS))
def width(request, browser) -> Iterator[str]:
    """The test runs at a desktop and at a phone width; the window goes back to desktop after."""
    browser.set_window_size(WIDTHS[request.param], 1000)
    yield request.param
    browser.set_window_size(1280, 1000)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def web_db(pg: Cluster, tiny_daemon) -> Iterator[tuple[str, str]]:
    """A copy of the sample shop wired to the real daemon, and a role that must give its password."""
    dbname, role = f"web_{os.getpid()}", "web_analyst"
    pg.psql(f'CREATE DATABASE "{dbname}" TEMPLATE "{SHOP_TEMPLATE}"')
    configure_socket(pg, dbname, str(tiny_daemon.socket_path))
    grant_reader(pg, dbname, role)
    require_password(pg, role, PASSWORD)
    yield dbname, role
    pg.psql(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    pg.psql(f'DROP ROLE IF EXISTS "{role}"', check=False)


@pytest.fixture(scope="module")
def server(pg: Cluster, web_db: tuple[str, str]) -> Iterator[str]:
    """``sqlcoder-web`` as a user starts it; its base URL."""
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
    proc = subprocess.Popen([sys.executable, "-m", "sqlcoder_web", "--port", str(port), "--conninfo",
                             f"host={pg.sockdir} port={pg.port} dbname={web_db[0]}"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(base + "/login", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.1)
    yield base
    proc.terminate()
    out, _ = proc.communicate(timeout=30)
    assert PASSWORD not in out  # nothing the server logged holds the password
    assert "Traceback" not in out, out


def chromium() -> webdriver.Chrome:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: webdriver.Chrome, css: str, timeout: float = 30):
    return WebDriverWait(driver, timeout).until(EC.presence_of_element_located((By.CSS_SELECTOR, css)))


def _gone(old):
    """The old page's element is gone. Chromium sometimes reports a node of a replaced document as an
    inspector error ("does not belong to the document") instead of a stale reference: that is gone too."""
    def check(_driver: webdriver.Chrome) -> bool:
        try:
            old.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc):
                return True
            raise
        return False
    return check


def submit(driver: webdriver.Chrome, button_id: str, timeout: float = 90) -> None:
    """Click a button that loads a new page, and wait until the old one is gone."""
    old = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.ID, button_id).click()
    WebDriverWait(driver, timeout).until(_gone(old))


def login(driver: webdriver.Chrome, base: str, role: str, password: str) -> None:
    driver.get(base + "/login")
    box = wait(driver, "#role")
    box.clear()
    box.send_keys(role)
    driver.find_element(By.ID, "password").send_keys(password)
    submit(driver, "login")


def ask(driver: webdriver.Chrome, question: str) -> None:
    box = wait(driver, "#question")
    box.clear()
    box.send_keys(question)
    submit(driver, "ask")
    wait(driver, "#result, #problem")


def run_sql(driver: webdriver.Chrome, sql: str) -> None:
    box = wait(driver, "#sql")
    driver.execute_script("document.getElementById('sql-box').open = true; arguments[0].value = arguments[1]",
                          box, sql)
    submit(driver, "run")
    wait(driver, "#result, #problem")


def history_row(pg: Cluster, dbname: str, history_id: int) -> dict:
    with pg.connect(dbname) as conn:
        cur = conn.execute("SELECT correct, corrected_sql, question FROM sqlcoder.history WHERE id = %s",
                           (history_id,))
        correct, corrected, question = cur.fetchone()
    return {"correct": correct, "corrected_sql": corrected, "question": question}


# -- browser ------------------------------------------------------------------------------------

def test_login_failure_reads_the_same_whichever_part_was_wrong(browser, server, web_db, pg) -> None:
    role = web_db[1]
    login(browser, server, role, "wrong password")
    assert wait(browser, "#login-message").text == auth.LOGIN_FAILED
    login(browser, server, "no_such_role_at_all", PASSWORD)
    assert wait(browser, "#login-message").text == auth.LOGIN_FAILED
    assert "password authentication" not in browser.page_source and "does not exist" not in browser.page_source
    # A role the server lets in without a password (trust) cannot log in through the page.
    pg.psql(f'DO $$ BEGIN CREATE ROLE "{role}_trusted" LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$')
    login(browser, server, f"{role}_trusted", "anything")
    assert wait(browser, "#login-message").text == auth.NO_PASSWORD_ASKED
    pg.psql(f'DROP ROLE "{role}_trusted"')


def test_ask_shows_sql_rows_a_bar_chart_csv_and_the_prompt(browser, server, web_db) -> None:
    login(browser, server, web_db[1], PASSWORD)
    assert wait(browser, "#who").text == web_db[1]
    ask(browser, QUESTION["question"])
    sql = browser.find_element(By.ID, "sql").get_attribute("value")
    assert " ".join(sql.split()) == QUESTION["sql"]  # formatted: whitespace only
    rows = browser.find_elements(By.CSS_SELECTOR, "#result-table tbody tr")
    assert len(rows) == 5 and browser.find_element(By.ID, "row-count").text == "5"
    assert [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#result-table th")] == ["name", "price"]
    canvas = wait(browser, "canvas#chart[data-chart-type]")
    assert canvas.get_attribute("data-chart-type") == "bar"
    assert browser.execute_script("return Chart.getChart(arguments[0]).data.labels.length", canvas) == 5
    csv_text = browser.execute_async_script(
        "const done = arguments[0]; fetch('/result.csv').then(r => r.text()).then(done)")
    lines = csv_text.strip().splitlines()
    assert lines[0] == "name,price" and len(lines) == 6
    href = browser.find_element(By.ID, "prompt-link").get_attribute("href")
    browser.get(href)
    prompt = wait(browser, "#prompt").text
    assert QUESTION["question"] in prompt and "CREATE TABLE products" in prompt
    browser.get(server + "/")


def test_feedback_and_correction_show_in_history(browser, server, web_db, pg) -> None:
    ask(browser, QUESTION["question"])
    ask_id = int(browser.find_element(By.NAME, "ask_id").get_attribute("value"))
    submit(browser, "thumbs-up")
    assert "saved" in wait(browser, "#thanks").text
    item = browser.find_element(By.CSS_SELECTOR, f'#history li[data-id="{ask_id}"]')
    assert QUESTION["question"] in item.text and item.find_elements(By.CSS_SELECTOR, ".verdict.up")
    assert history_row(pg, web_db[0], ask_id)["correct"] is True

    # Feedback is about the SQL on screen: edited and run, "Right" records the edit, and its rows stay.
    fixed = "SELECT name, price FROM products ORDER BY price DESC, name LIMIT 3;"
    browser.find_element(By.CSS_SELECTOR, "#sql-box summary").click()  # one click: the SQL
    run_sql(browser, fixed)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#result-table tbody tr")) == 3
    submit(browser, "thumbs-up")
    assert "correct one" in wait(browser, "#thanks").text
    item = browser.find_element(By.CSS_SELECTOR, f'#history li[data-id="{ask_id}"]')
    assert item.find_elements(By.CSS_SELECTOR, ".verdict.down") and "corrected" in item.text
    assert history_row(pg, web_db[0], ask_id) == {"correct": False, "corrected_sql": fixed,
                                                 "question": QUESTION["question"]}
    assert len(browser.find_elements(By.CSS_SELECTOR, "#result-table tbody tr")) == 3  # the rows kept
    assert browser.find_element(By.ID, "reopened").text == "The rows as you last saw them."
    assert browser.find_element(By.ID, "sql").get_attribute("value") == fixed


def test_a_refusal_shows_postgresqls_message_hint_and_the_daemon(browser, server, pg, web_db) -> None:
    run_sql(browser, "DELETE FROM orders")
    problem = wait(browser, "#problem")
    with pytest.raises(psycopg.Error) as refused:  # what psql would have said
        with psycopg.connect(pg.conninfo(*web_db), password=PASSWORD) as conn:
            conn.execute("SELECT * FROM sqlcoder.execute('DELETE FROM orders')")
    # Plain words first; PostgreSQL's own message, HINT and SQLSTATE one click away.
    assert browser.find_element(By.ID, "problem-plain").text == db.plain_words(db.Problem(
        "query", "", sqlstate=refused.value.sqlstate))
    assert "SQLSTATE" not in problem.text and not browser.find_element(By.ID, "problem-message").is_displayed()
    browser.find_element(By.CSS_SELECTOR, "#problem-details summary").click()
    assert f"SQLSTATE {refused.value.sqlstate}" in problem.text
    assert browser.find_element(By.ID, "problem-message").text == refused.value.diag.message_primary
    assert browser.find_element(By.ID, "problem-hint").text == "What to do: " + refused.value.diag.message_hint
    # The daemon's details are for superusers; everyone else reads one sentence.
    assert browser.find_element(By.ID, "daemon-summary").text == "The assistant that writes SQL is up."
    assert not browser.find_elements(By.ID, "daemon-status")


def test_a_time_column_gives_a_line_chart_and_hostile_text_stays_text(browser, server) -> None:
    run_sql(browser, "SELECT ordered_at::date AS day, count(*) AS orders FROM orders GROUP BY 1 ORDER BY 1")
    assert wait(browser, "canvas#chart[data-chart-type]").get_attribute("data-chart-type") == "line"
    run_sql(browser, """SELECT 'a' AS k, '{"x": [1, {"y": 2}]}'::json AS j, 1 AS k""")
    assert [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#result-table td")] == \
        ["a", '{"x": [1, {"y": 2}]}', "1"]  # a json cell as JSON; a repeated column name kept
    hostile = "<img src=x onerror=\"document.title='pwned'\"></td><script>document.title='pwned'</script>"
    run_sql(browser, "SELECT " + "'" + hostile.replace("'", "''") + "' AS name, 1 AS n")
    assert browser.find_element(By.CSS_SELECTOR, "#result-table td").text == hostile
    assert browser.title != "pwned" and not browser.find_elements(By.CSS_SELECTOR, "#result-table img")


def test_the_row_and_byte_caps_are_shown(browser, server, web_db, pg) -> None:
    with pg.connect(web_db[0]) as conn:
        conn.execute("UPDATE sqlcoder.config SET value = '2' WHERE key = 'max_rows'")
    try:
        run_sql(browser, "SELECT name FROM customers ORDER BY name")
    finally:
        with pg.connect(web_db[0]) as conn:
            conn.execute("DELETE FROM sqlcoder.config WHERE key = 'max_rows'")
    assert "first 2 rows" in wait(browser, "#result .notice.cap").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#result-table tbody tr")) == 2
    with pg.connect(web_db[0]) as conn:  # the byte cap stops the query: its error, with the HINT
        conn.execute("UPDATE sqlcoder.config SET value = '64' WHERE key = 'max_result_bytes'")
    try:
        run_sql(browser, "SELECT name, email FROM customers")
    finally:
        with pg.connect(web_db[0]) as conn:
            conn.execute("DELETE FROM sqlcoder.config WHERE key = 'max_result_bytes'")
    assert "too large to show" in wait(browser, "#problem-plain").text
    browser.find_element(By.CSS_SELECTOR, "#problem-details summary").click()
    assert "max_result_bytes" in browser.find_element(By.ID, "problem-message").text
    assert "SQLSTATE 54000" in browser.find_element(By.ID, "problem").text
    assert browser.find_elements(By.ID, "problem-hint")


def test_a_lost_daemon_is_named_and_the_page_recovers(browser, server, web_db, pg, tiny_daemon) -> None:
    configure_socket(pg, web_db[0], "/nonexistent/sqlcoder.sock")
    try:
        ask(browser, QUESTION["question"])
        assert "not available right now" in wait(browser, "#problem-plain").text
        assert "not available" in browser.find_element(By.ID, "daemon-summary").text
        assert "/nonexistent" not in browser.find_element(By.ID, "problem").text  # folded away
    finally:
        configure_socket(pg, web_db[0], str(tiny_daemon.socket_path))
    ask(browser, QUESTION["question"])
    assert len(browser.find_elements(By.CSS_SELECTOR, "#result-table tbody tr")) == 5


def test_the_page_makes_no_third_party_request(browser, server) -> None:
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    assert any(u.endswith("chart.umd.min.js") for u in urls)
    assert [u for u in urls if not u.startswith((server + "/", "data:", "blob:"))] == []
    # Nothing the page does (the chart library included) trips its own Content-Security-Policy.
    assert [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]] == []


# -- the page at a desktop and a phone width ----------------------------------------------------

CONTRAST_JS = """
function rgb(c) { const m = c.match(/[\\d.]+/g).map(Number); return m.length > 3 ? m : m.concat([1]); }
function lum(c) {
  const v = c.slice(0, 3).map(x => { x /= 255; return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; });
  return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2];
}
function background(el) {
  for (; el; el = el.parentElement) { const c = rgb(getComputedStyle(el).backgroundColor); if (c[3] > 0.5) return c; }
  return [255, 255, 255, 1];
}
const out = [];
for (const el of document.querySelectorAll(arguments[0])) {
  const r = el.getBoundingClientRect();
  if (!r.width || !r.height || getComputedStyle(el).visibility === 'hidden') continue;
  const a = lum(rgb(getComputedStyle(el).color)), b = lum(background(el));
  const name = el.id || el.tagName + ':' + el.textContent.trim().slice(0, 20);
  out.push([name, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)]);
}
return out;
"""
CONTROLS = "button, a, summary, input:not([type=hidden]), textarea, label"


def low_contrast(driver: webdriver.Chrome) -> list:
    return [(name, round(ratio, 2)) for name, ratio in driver.execute_script(CONTRAST_JS, CONTROLS) if ratio < 4.5]


def fits(driver: webdriver.Chrome) -> None:
    """Nothing pushes the page wider than the window (a wide table scrolls inside its own box)."""
    inner, scroll = driver.execute_script(
        "return [window.innerWidth, document.documentElement.scrollWidth]")
    assert scroll <= inner, f"page is {scroll} px wide in a {inner} px window"
    box = driver.find_element(By.ID, "question").rect
    assert box["x"] >= 0 and box["x"] + box["width"] <= inner


def test_the_answer_comes_first_and_the_page_fits_the_window(browser, server, web_db, width) -> None:
    login(browser, server, web_db[1], PASSWORD)  # on its own too: it takes the README's screenshots
    ask(browser, QUESTION["question"])
    fits(browser)
    result, sql_box = browser.find_element(By.ID, "result"), browser.find_element(By.ID, "sql-box")
    assert result.rect["y"] < sql_box.rect["y"]  # rows and chart above the SQL
    chart = browser.find_element(By.ID, "chart")
    assert chart.rect["y"] < browser.execute_script("return window.innerHeight")  # on the first screen
    assert not browser.find_element(By.ID, "sql").is_displayed()  # folded ...
    browser.find_element(By.CSS_SELECTOR, "#sql-box summary").click()
    assert browser.find_element(By.ID, "sql").is_displayed()  # ... one click away
    history = browser.find_element(By.ID, "history")
    if width == "phone":  # stacked: your questions below the answer, as wide as the window at most
        assert history.rect["y"] > result.rect["y"]
        assert history.rect["width"] <= browser.execute_script("return window.innerWidth")
    else:
        assert history.rect["x"] + history.rect["width"] <= result.rect["x"]
    fits(browser)
    shots = os.environ.get("SQLCODER_WEB_SCREENSHOTS")
    if shots:
        browser.find_element(By.CSS_SELECTOR, "#sql-box summary").click()  # folded again, as it opens
        browser.execute_script("window.scrollTo(0, 0); document.activeElement.blur()")
        browser.set_window_size(WIDTHS[width], 1120 if width == "desktop" else 1100)
        Path(shots, f"web-{width}.png").write_bytes(browser.get_screenshot_as_png())


def test_charts_skip_keys_start_at_zero_and_are_labelled_from_the_question(browser, server, width) -> None:
    browser.get(server + "/")
    ask(browser, QUESTION["question"])
    run_sql(browser, "SELECT id, name, price FROM products ORDER BY price DESC LIMIT 5")
    canvas = wait(browser, "canvas#chart[data-chart-type]")
    spec = browser.execute_script("const c = Chart.getChart(arguments[0]); return {series: c.data.datasets.map("
                                  "d => d.label), title: c.options.plugins.title.text, "
                                  "x: c.options.scales.x.title.text, y: c.options.scales.y.title.text}", canvas)
    assert spec == {"series": ["Price"], "title": QUESTION["question"], "x": "Name", "y": "Price"}
    run_sql(browser, "SELECT ordered_at::date AS day, count(*) + 100 AS orders, min(customer_id) AS customer_id "
                     "FROM orders GROUP BY 1 ORDER BY 1")
    canvas = wait(browser, "canvas#chart[data-chart-type]")
    assert canvas.get_attribute("data-chart-type") == "line"
    assert canvas.get_attribute("data-y-min") == "0"  # not 100: the axis starts at 0
    assert browser.execute_script("return Chart.getChart(arguments[0]).data.datasets.map(d => d.label)",
                                  canvas) == ["Orders"]
    fits(browser)


def test_a_slow_answer_shows_its_time_and_cancel_stops_it_on_the_server(browser, server, web_db, pg,
                                                                        tiny_daemon, width) -> None:
    browser.get(server + "/")
    cancel_a_slow_answer(browser, server, web_db, pg, tiny_daemon, width)
    browser.get(server + "/")
    ask(browser, QUESTION["question"])  # the session works on
    assert len(browser.find_elements(By.CSS_SELECTOR, "#result-table tbody tr")) == 5


def cancel_a_slow_answer(browser, server, web_db, pg, tiny_daemon, width) -> None:
    with FakeDaemon(socket_dir() / f"web-hang-{width}.sock") as fake:
        fake.misbehave("hang")
        configure_socket(pg, web_db[0], str(fake.path))
        try:
            box = wait(browser, "#question")
            box.clear()
            box.send_keys("how many customers are there?")
            asked = sum(r.get("op") == "generate" for r in fake.requests)
            browser.find_element(By.ID, "ask").click()
            progress = wait(browser, "#progress")
            WebDriverWait(browser, 20).until(lambda d: progress.is_displayed())
            WebDriverWait(browser, 20).until(
                lambda d: sum(r.get("op") == "generate" for r in fake.requests) > asked)  # waiting on the model
            WebDriverWait(browser, 10).until(lambda d: int(d.find_element(By.ID, "elapsed").text.split()[0]) >= 1)
            ask_button = browser.find_element(By.ID, "ask")
            assert ask_button.get_attribute("aria-busy") == "true"
            assert low_contrast(browser) == []  # the busy button and Cancel too
            before = len(fake.disconnects)
            browser.find_element(By.ID, "cancel").click()
            WebDriverWait(browser, 15).until(lambda d: progress.get_attribute("data-cancelled") == "yes")
            assert browser.find_element(By.ID, "progress-text").text == "Cancelled."
            deadline = time.monotonic() + 10  # the daemon request was dropped ...
            while len(fake.disconnects) == before and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(fake.disconnects) > before, "the daemon request was not dropped"
            with pg.connect(web_db[0]) as conn:  # ... and PostgreSQL runs the question no more
                for _ in range(100):
                    running = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND "
                                           "state = 'active' AND query LIKE '%%sqlcoder.ask%%'",
                                           (web_db[1],)).fetchone()[0]
                    if not running:
                        break
                    time.sleep(0.1)
                assert running == 0
        finally:
            configure_socket(pg, web_db[0], str(tiny_daemon.socket_path))


def test_keyboard_first_skip_link_autofocus_and_contrast(browser, server, web_db, width) -> None:
    login(browser, server, web_db[1], PASSWORD)
    wait(browser, "#question")
    assert browser.switch_to.active_element.get_attribute("id") == "question"  # autofocus after login
    first = browser.execute_script("return document.querySelector("
                                   "'a[href], button, input:not([type=hidden]), textarea, select, summary').id")
    assert first == "skip"  # the first stop of the keyboard ...
    browser.execute_script("document.body.tabIndex = -1; document.body.focus(); document.body.removeAttribute("
                           "'tabindex'); window.scrollTo(0, 0)")
    webdriver.ActionChains(browser).send_keys("\ue004").perform()  # ... Tab from the top of the page
    skip = browser.switch_to.active_element
    assert skip.get_attribute("id") == "skip" and skip.is_displayed()
    assert skip.get_attribute("href").endswith("#question")
    ask(browser, QUESTION["question"])
    browser.find_element(By.CSS_SELECTOR, "#sql-box summary").click()
    assert low_contrast(browser) == []
    browser.execute_script("for (const b of document.querySelectorAll('button')) b.disabled = true")
    assert low_contrast(browser) == []  # disabled controls stay readable
    browser.get(server + "/")


def test_history_is_deduplicated_and_reopening_shows_the_rows(browser, server, web_db, width) -> None:
    browser.get(server + "/")
    for q in (QUESTION["question"], "  " + QUESTION["question"] + " "):
        ask(browser, q)
    items = [li for li in browser.find_elements(By.CSS_SELECTOR, "#history li.history-item")
             if li.find_element(By.TAG_NAME, "a").text.strip().lower() == QUESTION["question"].lower()]
    assert len(items) == 1
    ask_id = items[0].get_attribute("data-id")
    browser.get(server + "/")
    assert not browser.find_elements(By.ID, "result")
    browser.find_element(By.CSS_SELECTOR, f'#history li[data-id="{ask_id}"] a').click()
    wait(browser, "#result")
    assert browser.find_element(By.ID, "reopened").text == "The rows as you last saw them."
    assert len(browser.find_elements(By.CSS_SELECTOR, "#result-table tbody tr")) == 5
    login(browser, server, web_db[1], PASSWORD)  # a new session keeps no rows: the SQL runs again
    browser.get(f"{server}/?h={ask_id}")
    assert wait(browser, "#reopened").text == "Run again just now."
    assert len(browser.find_elements(By.CSS_SELECTOR, "#result-table tbody tr")) == 5
    fits(browser)


def test_suggested_questions_are_examples_the_role_may_read(browser, server, web_db, pg, width) -> None:
    readable, hidden = f"which products cost most ({width})?", f"what is in the vault ({width})?"
    with pg.connect(web_db[0]) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS vault (secret text)")
        conn.execute("SELECT sqlcoder.add_example(%s, 'SELECT name FROM products ORDER BY price DESC')",
                     (readable,))
        conn.execute("SELECT sqlcoder.add_example(%s, 'SELECT secret FROM vault')", (hidden,))
    browser.get(server + "/")
    shown = [b.text for b in browser.find_elements(By.CSS_SELECTOR, "#suggestions button.suggestion")]
    assert readable in shown and hidden not in shown and hidden not in browser.page_source
    browser.find_element(By.XPATH, f'//button[@data-question="{readable}"]').click()
    assert browser.find_element(By.ID, "question").get_attribute("value") == readable
    fits(browser)


REFINE = "now only the top 3"
REFINED_SQL = "SELECT name, price FROM products ORDER BY price DESC LIMIT 3;"


def test_the_refine_box_asks_a_follow_up_and_the_thread_shows_it(browser, server, web_db, pg, tiny_daemon,
                                                                 width) -> None:
    """The refine box under an answer sends ``sqlcoder.ask(..., follow_up => that answer's id)``: the model
    sees the earlier question and SQL, and the page shows the two as one conversation. A stand-in daemon
    answers (the demo model knows only the sample questions), so the test sees the prompt it was sent."""
    with FakeDaemon(socket_dir() / f"web-refine-{width}.sock") as fake:
        fake.reply(" " + QUESTION["sql"]).reply_when("follows up an earlier one", " " + REFINED_SQL)
        configure_socket(pg, web_db[0], str(fake.path))
        try:
            browser.get(server + "/")
            ask(browser, QUESTION["question"])
            first = int(browser.find_element(By.NAME, "ask_id").get_attribute("value"))
            assert len(browser.find_elements(By.CSS_SELECTOR, "#result-table tbody tr")) == 5
            assert not browser.find_elements(By.ID, "thread")  # one question is no conversation yet
            box = wait(browser, "#refine")
            assert browser.find_element(By.ID, "result").rect["y"] < box.rect["y"] < \
                browser.find_element(By.ID, "sql-box").rect["y"]  # under the answer, above the SQL
            box.send_keys(REFINE)
            submit(browser, "refine-ask")
            wait(browser, "#result, #problem")
            sent = [r for r in fake.requests if r.get("op") == "generate"][-1]["prompt"]
            assert REFINE in sent and QUESTION["question"] in sent and QUESTION["sql"].rstrip(";") in sent
            assert len(browser.find_elements(By.CSS_SELECTOR, "#result-table tbody tr")) == 3
            second = int(browser.find_element(By.NAME, "ask_id").get_attribute("value"))
            turns = browser.find_elements(By.CSS_SELECTOR, "#thread li.turn")
            assert [(int(t.get_attribute("data-id")), t.text) for t in turns] == \
                [(first, QUESTION["question"]), (second, REFINE)]
            assert "current" in turns[1].get_attribute("class")
            assert browser.find_element(By.NAME, "follow_up").get_attribute("value") == str(second)
            assert browser.find_element(By.ID, "question").get_attribute("value") == ""  # for a new question
            canvas = wait(browser, "canvas#chart[data-chart-type]")
            assert browser.execute_script("return Chart.getChart(arguments[0]).options.plugins.title.text",
                                          canvas) == f"{QUESTION['question']} — {REFINE}"
            listed = browser.find_element(By.CSS_SELECTOR, f'#history li[data-id="{second}"]')
            assert "follow-up" in listed.get_attribute("class")
            fits(browser)
            assert low_contrast(browser) == []
            shots = os.environ.get("SQLCODER_WEB_SCREENSHOTS")
            if shots and width == "desktop":
                browser.execute_script("window.scrollTo(0, 0); document.activeElement.blur()")
                browser.set_window_size(WIDTHS[width], 1200)
                Path(shots, "web-conversation.png").write_bytes(browser.get_screenshot_as_png())
            href = browser.find_element(By.ID, "prompt-link").get_attribute("href")
            assert f"f={first}" in href  # the prompt the follow-up sent, earlier turn included
            browser.get(href)
            shown = wait(browser, "#prompt").text
            assert REFINE in shown and QUESTION["question"] in shown and "follows up an earlier one" in shown
            browser.get(f"{server}/?h={first}")  # reopening the first question shows its conversation
            turns = wait(browser, "#thread").find_elements(By.CSS_SELECTOR, "li.turn")
            assert [int(t.get_attribute("data-id")) for t in turns] == [first, second]
            assert "current" in turns[0].get_attribute("class")
            assert len(browser.find_elements(By.CSS_SELECTOR, "#result-table tbody tr")) == 5
        finally:
            configure_socket(pg, web_db[0], str(tiny_daemon.socket_path))


def test_the_status_page_is_a_summary_for_users(browser, server, width) -> None:
    browser.get(server + "/status")
    assert wait(browser, "#status-summary").text == "The assistant that writes SQL is up."
    assert not browser.find_elements(By.ID, "daemon-json")
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "socket" not in text and "uid" not in text and "/" not in text


# -- HTTP: cookies, headers, CSRF -------------------------------------------------------------

def test_every_post_needs_the_csrf_token_and_cookies_are_httponly_samesite(server, web_db, pg) -> None:
    with httpx.Client(base_url=server) as client:
        page = client.get("/login")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        cookie = page.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        refused = client.post("/login", data={"role": web_db[1], "password": PASSWORD})
        assert refused.status_code == 403  # and a fresh form:
        token = re.search(r'name="csrf" value="([^"]+)"', refused.text).group(1)
        done = client.post("/login", data={"csrf": token, "role": web_db[1], "password": PASSWORD})
        assert done.status_code == 303 and "httponly" in done.headers["set-cookie"].lower()
        index = client.get("/")
        csrf = re.search(r'name="csrf" value="([^"]+)"', index.text).group(1)
        for path in ("/ask", "/run", "/feedback", "/logout"):
            assert client.post(path, data={"question": "x", "sql": "SELECT 1"}).status_code == 403, path
            assert client.post(path, data={"csrf": csrf + "x"}).status_code == 403, path
            assert client.post(path, data={"csrf": csrf, "sql": "SELECT 1"},
                               headers={"origin": "http://evil.example"}).status_code == 403, path
        assert client.post("/run", data={"csrf": csrf, "sql": "SELECT 1 AS one"}).status_code == 200
        form = {"content-type": "application/x-www-form-urlencoded"}
        assert client.post("/ask", content=b"x" * 400_000, headers=form).status_code == 413
        chunked = (b"question=" + b"x" * 65536 for _ in range(5))  # no Content-Length
        assert client.post("/ask", content=chunked, headers=form).status_code == 413
        # Another role's history row: row-level security hides it from the page.
        with pg.connect(web_db[0]) as conn:
            other = conn.execute("INSERT INTO sqlcoder.history (role, operation, question, sql, outcome) "
                                 "VALUES ('someone_else', 'ask', 'secret question', 'SELECT 42', 'ok') "
                                 "RETURNING id").fetchone()[0]
        assert "secret question" not in client.get(f"/?h={other}").text
        # ... and a forged follow_up naming it: sqlcoder's refusal, nothing of its text on the page.
        for reply in (client.post("/ask", data={"csrf": csrf, "question": "and their phone?", "follow_up": other}),
                      client.get("/prompt", params={"q": "and their phone?", "f": other})):
            assert reply.status_code == 200 and f"no sqlcoder.history entry {other} of yours" in reply.text
            assert "secret question" not in reply.text and "SELECT 42" not in reply.text
        assert client.post("/logout", data={"csrf": csrf}).status_code == 303
        assert client.get("/").status_code == 303  # the session is gone
