"""Driving app.py in a real browser: start the server on a free loopback port, open headless Debian chromium.

Used by tests/test_app_live.py, bench/app.py and tools/screenshot.py, not by the tool itself. Chromium is the
Debian package (`apt-get install chromium`), driven by Python playwright through `executable_path`: nothing
is downloaded.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("M4_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
START_TIMEOUT_S = 180


def missing_browser() -> str | None:
    """Why the browser cannot run here, or None."""
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return f"chromium not found at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright)"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_app(*args: str, cwd: Path = ROOT, log: Path | None = None, threads: int | None = 1) -> Iterator[str]:
    """`python app.py ARGS --port FREE` as a child process; yields its URL once it answers, stops it after.

    `threads`: OpenMP threads of the server (one by default: tests share a small machine); None keeps the default.
    """
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    output = open(log, "wb") if log else subprocess.DEVNULL
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), *args, "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"app.py exited with {process.returncode} before serving (log: {log})")
            try:
                with urllib.request.urlopen(url, timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"app.py did not answer on {url} within {START_TIMEOUT_S} s") from None
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log:
            output.close()


@contextmanager
def chromium_page(width: int = 1280, height: int = 900) -> Iterator[tuple[Any, list[str]]]:
    """A page of headless chromium that may reach the loopback address only; yields it and the list of the
    other addresses it tried to reach (aborted), which an offline page leaves empty."""
    from playwright.sync_api import sync_playwright

    outside: list[str] = []

    def loopback_only(route: Any) -> None:
        url = route.request.url
        if url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
            context.route("**/*", loopback_only)
            yield context.new_page(), outside
        finally:
            browser.close()
