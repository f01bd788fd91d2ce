"""End to end in a real headless browser: the page searches, shows and opens a passage."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from api.app import create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
DISCIPLINE = "thi hành kỷ luật 151 đảng viên"


@pytest.fixture(scope="module")
def base_url(searcher, classifier):
    """The real app under uvicorn on a free loopback port, in a thread."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(searcher=searcher, classifier=classifier)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the test server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing; install it with: apt-get install -y chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def test_search_page_finds_and_opens_the_disciplining_paragraph(base_url, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="vi-VN")
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(base_url + "/")
    page.wait_for_selector(".topic-option")

    page.fill("#q", "ky luat dang vien")
    page.press("#q", "Enter")
    hit = page.locator(".hit", has_text=DISCIPLINE).first
    hit.wait_for(timeout=30_000)
    assert hit.locator("mark").count() > 0
    assert "q=ky+luat+dang+vien" in page.url
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "search-page.png"), full_page=True)

    hit.get_by_role("button", name="Xem trong văn bản").click()
    current = page.locator("#reader .passage.current")
    current.wait_for()
    assert DISCIPLINE in current.inner_text()
    assert page.locator("#reader .passage").count() > 1
    assert "p=" in page.url
    page.screenshot(path=str(OUTPUT / "search-reader.png"))

    page.keyboard.press("Escape")
    page.locator("#reader").wait_for(state="hidden")
    assert errors == []
    page.close()
