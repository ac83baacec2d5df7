"""sqlcoder-web in a real browser: headless Debian chromium through chromedriver, the real
``sqlcoder-web`` command, a throwaway cluster that asks for passwords, the real daemon and demo model.

One server and one browser serve the whole module; the tests run in file order
(log in first). Set ``SQLCODER_WEB_SCREENSHOT=docs/web-chart.png`` to save the
chart answer's screenshot shown in the README.
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
from sqlcoder_dev.pgcluster import Cluster
from sqlcoder_dev.web_demo import grant_reader, require_password
from sqlcoder_web import auth

PASSWORD = "s3cret 'quoted\" pass"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
QUESTION = shop.sample_questions()[1]  # the 5 most expensive products: a category and a number


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


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
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
    driver.execute_script("arguments[0].value = arguments[1]", box, sql)
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
    if os.environ.get("SQLCODER_WEB_SCREENSHOT"):
        Path(os.environ["SQLCODER_WEB_SCREENSHOT"]).write_bytes(browser.get_screenshot_as_png())
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

    fixed = "SELECT name, price FROM products ORDER BY price DESC, name LIMIT 5;"
    browser.find_element(By.CSS_SELECTOR, "#correct summary").click()
    box = browser.find_element(By.ID, "corrected-sql")
    box.clear()
    box.send_keys(fixed)
    submit(browser, "save-correction")
    wait(browser, "#thanks")
    item = browser.find_element(By.CSS_SELECTOR, f'#history li[data-id="{ask_id}"]')
    assert item.find_elements(By.CSS_SELECTOR, ".verdict.down") and "corrected" in item.text
    assert history_row(pg, web_db[0], ask_id) == {"correct": False, "corrected_sql": fixed,
                                                 "question": QUESTION["question"]}


def test_a_refusal_shows_postgresqls_message_hint_and_the_daemon(browser, server, pg, web_db) -> None:
    run_sql(browser, "DELETE FROM orders")
    problem = wait(browser, "#problem")
    with pytest.raises(psycopg.Error) as refused:  # what psql would have said
        with psycopg.connect(pg.conninfo(*web_db), password=PASSWORD) as conn:
            conn.execute("SELECT * FROM sqlcoder.execute('DELETE FROM orders')")
    assert f"SQLSTATE {refused.value.sqlstate}" in problem.text
    assert browser.find_element(By.ID, "problem-message").text == refused.value.diag.message_primary
    assert browser.find_element(By.ID, "problem-hint").text == "What to do: " + refused.value.diag.message_hint
    assert "Model daemon: up, serving" in browser.find_element(By.ID, "daemon-status").text


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
    assert "max_result_bytes" in wait(browser, "#problem-message").text
    assert "SQLSTATE 54000" in browser.find_element(By.ID, "problem").text
    assert browser.find_elements(By.ID, "problem-hint")


def test_a_lost_daemon_is_named_and_the_page_recovers(browser, server, web_db, pg, tiny_daemon) -> None:
    configure_socket(pg, web_db[0], "/nonexistent/sqlcoder.sock")
    try:
        ask(browser, QUESTION["question"])
        assert "model daemon" in wait(browser, "#problem h2").text
        assert "not reachable" in browser.find_element(By.ID, "daemon-status").text
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
        assert client.post("/logout", data={"csrf": csrf}).status_code == 303
        assert client.get("/").status_code == 303  # the session is gone
