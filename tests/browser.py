"""Headless Chromium for the studio's tests and benchmark: Debian's browser driven by Playwright.

No browser is ever downloaded: ``executable_path`` is Debian's ``chromium`` (``SEQBOT_CHROMIUM``
names another). Without it the browser tests skip, saying why, unless ``SEQBOT_REQUIRE_BROWSER=1``
(set by ``.ci/run``), when they fail. Telegram's ``telegram-web-app.js`` is replaced, through
Playwright's routing, by :func:`telegram_stub`: a ``Telegram.WebApp`` with a real signed
``initData`` that records what the page asks of Telegram (BackButton, haptics, ready, expand).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

TELEGRAM_JS = "https://telegram.org/js/telegram-web-app.js"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DARK = {
    "bg_color": "#17212b",
    "secondary_bg_color": "#0e1621",
    "text_color": "#f5f5f5",
    "hint_color": "#708499",
    "link_color": "#6ab3f3",
    "button_color": "#5288c1",
    "button_text_color": "#ffffff",
    "section_bg_color": "#17212b",
    "destructive_text_color": "#ec3942",
}
LIGHT = {
    "bg_color": "#ffffff",
    "secondary_bg_color": "#efeff3",
    "text_color": "#000000",
    "hint_color": "#999999",
    "link_color": "#2481cc",
    "button_color": "#2481cc",
    "button_text_color": "#ffffff",
    "section_bg_color": "#ffffff",
    "destructive_text_color": "#cc2929",
}


def chromium() -> str | None:
    """The Chromium to drive: ``SEQBOT_CHROMIUM`` or Debian's, if it is there."""
    wanted = os.environ.get("SEQBOT_CHROMIUM")
    if wanted:
        return wanted if Path(wanted).exists() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def need_browser() -> str:
    """Chromium's path; skips the test (fails it with ``SEQBOT_REQUIRE_BROWSER=1``) without one."""
    path = chromium()
    reason = None
    if path is None:
        reason = "no Chromium (apt-get install chromium, or set SEQBOT_CHROMIUM)"
    else:
        try:
            import playwright.async_api  # noqa: F401
        except ImportError:
            reason = "Playwright for Python is not installed (pip install -e '.[test]')"
    if reason is None:
        assert path is not None
        return path
    if os.environ.get("SEQBOT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser tests required (SEQBOT_REQUIRE_BROWSER=1) but {reason}")
    pytest.skip(reason)


def init_data(
    token: str,
    user: dict[str, Any],
    *,
    auth_date: int | None = None,
    forge: bool = False,
    **extra: str,
) -> str:
    """``Telegram.WebApp.initData`` as Telegram signs it for ``user`` (``forge``: a wrong hash)."""
    fields = {
        "auth_date": str(int(time.time()) if auth_date is None else auth_date),
        "query_id": "AAHdF6IQAAAAAN0XohDhrOrc",
        "user": json.dumps(user, separators=(",", ":"), ensure_ascii=False),
        **extra,
    }
    check = "\n".join(f"{k}={fields[k]}" for k in sorted(fields))
    secret = hmac.new(b"WebAppData", token.encode(), hashlib.sha256).digest()
    digest = hmac.new(secret, check.encode(), hashlib.sha256).hexdigest()
    if forge:  # the same fields, another person's id put in after signing
        fields["user"] = json.dumps({**user, "id": user["id"] + 1}, separators=(",", ":"))
    return urlencode({**fields, "hash": digest})


def telegram_stub(
    data: str,
    user: dict[str, Any],
    *,
    theme: dict[str, str] = LIGHT,
    scheme: str = "light",
    safe_top: int = 0,
) -> str:
    """A ``telegram-web-app.js`` stand-in: ``window.Telegram.WebApp`` recording calls in ``__tg``."""
    config = json.dumps(
        {
            "initData": data,
            "initDataUnsafe": {"user": user, "auth_date": 0},
            "themeParams": theme,
            "colorScheme": scheme,
            "safeTop": safe_top,
        }
    )
    return """
(() => {
  const c = __CONFIG__;
  const calls = [];
  const rec = (name) => (...args) => { calls.push([name, ...args.filter((a) => typeof a !== "function")]); };
  const handlers = {};
  const back = { isVisible: false, clicks: [] };
  window.__tg = { calls, handlers, back };
  window.Telegram = { WebApp: {
    initData: c.initData, initDataUnsafe: c.initDataUnsafe, themeParams: c.themeParams,
    colorScheme: c.colorScheme, version: "8.0", platform: "tdesktop",
    viewportHeight: 780, viewportStableHeight: 780, isExpanded: true,
    safeAreaInset: { top: c.safeTop, bottom: 0, left: 0, right: 0 },
    contentSafeAreaInset: { top: 0, bottom: 0, left: 0, right: 0 },
    isVersionAtLeast: () => true,
    ready: rec("ready"), expand: rec("expand"), close: rec("close"),
    openTelegramLink: rec("openTelegramLink"), openLink: rec("openLink"),
    onEvent: (name, fn) => { (handlers[name] = handlers[name] || []).push(fn); calls.push(["onEvent", name]); },
    offEvent: rec("offEvent"),
    showConfirm: (text, cb) => { calls.push(["showConfirm", text]); setTimeout(() => cb(true), 0); },
    BackButton: {
      get isVisible() { return back.isVisible; },
      show() { back.isVisible = true; calls.push(["BackButton.show"]); return this; },
      hide() { back.isVisible = false; calls.push(["BackButton.hide"]); return this; },
      onClick(fn) { back.clicks.push(fn); return this; },
      offClick(fn) { back.clicks = back.clicks.filter((f) => f !== fn); return this; },
    },
    HapticFeedback: {
      impactOccurred: rec("HapticFeedback.impactOccurred"),
      notificationOccurred: rec("HapticFeedback.notificationOccurred"),
      selectionChanged: rec("HapticFeedback.selectionChanged"),
    },
  } };
  // What Telegram's client does when its back button is pressed.
  window.__pressBack = () => back.clicks.forEach((fn) => fn());
})();
""".replace("__CONFIG__", config)
