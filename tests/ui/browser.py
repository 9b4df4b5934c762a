"""What the dashboard tests do with the browser: wait, resize, measure overflow, take screenshots.

Screenshots land in $TFTSWEEP_TEST_ARTIFACTS (default: tests/artifacts/); each one's path is printed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

ARTIFACTS = Path(os.environ.get("TFTSWEEP_TEST_ARTIFACTS", "tests/artifacts"))
WIDTHS = (1400, 1000)


def wait_for(browser: Any, condition: Callable[[Any], Any], timeout: float = 30) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.2).until(condition)


def shot(browser: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    browser.save_screenshot(str(path))
    print(f"screenshot: {path.resolve()}")
    return path


def set_width(browser: Any, width: int, height: int = 900) -> None:
    """The viewport exactly `width` CSS pixels wide (the window's own size includes no chrome in
    headless mode, but an override leaves nothing to chance)."""
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    assert browser.execute_script("return window.innerWidth") == width


def page_overflow(browser: Any) -> int:
    """How many CSS pixels the page is wider than the viewport less its vertical scrollbar
    (`clientWidth`, stricter than `innerWidth`); 0 when there is no horizontal scrollbar."""
    return int(browser.execute_script("const d = document.documentElement; return d.scrollWidth - d.clientWidth;"))


def full_page_shot(browser: Any, name: str, width: int) -> Path:
    """A screenshot of the whole page at `width`: the viewport is stretched to the page's height."""
    height = int(browser.execute_script("return document.documentElement.scrollHeight"))
    set_width(browser, width, min(max(height, 600), 6000))
    path = shot(browser, name)
    set_width(browser, width)
    return path


def fits_at_every_width(browser: Any, name: str, check: Callable[[Any, int], None] | None = None) -> None:
    """At each of `WIDTHS`: the page does not overflow sideways, `check(browser, width)` holds,
    and a full-page screenshot `{name}_{width}.png` is taken. The viewport is reset after."""
    for width in WIDTHS:
        set_width(browser, width)
        assert page_overflow(browser) == 0, f"{name} overflows at {width} px"
        if check is not None:
            check(browser, width)
        full_page_shot(browser, f"{name}_{width}", width)
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
