"""Screenshot the Ray dashboard in headless Chromium, logged in with the cluster's token.

The token (``~/.ray/auth_token``) goes into the ``ray-authentication-token`` cookie that the
dashboard's own login page sets, through the Chrome DevTools Protocol (``aiohttp``, a Ray
dependency). Needs Debian's ``chromium`` (``apt-get install chromium``). Writes
``PREFIX-overview.png``, ``PREFIX-actors.png`` and ``PREFIX-jobs.png``; the README's picture of
a search's trial actors came from here, taken while ``search.run --backend ray`` ran:

    python benchmarks/dashboard_screenshot.py http://127.0.0.1:8265 docs/ray_dashboard
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PAGES = [("#/overview", "overview"), ("#/actors", "actors"), ("#/jobs", "jobs")]
PORT = 9333


async def _shoot(ws_url: str, url: str, prefix: str, token: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:
        ids = iter(range(1, 1_000_000))

        async def call(method: str, **params):
            n = next(ids)
            await ws.send_json({"id": n, "method": method, "params": params})
            while True:
                msg = json.loads((await ws.receive()).data)
                if msg.get("id") == n:
                    return msg.get("result", msg)

        host = url.split("//", 1)[1].split("/", 1)[0].split(":")[0]
        await call("Network.enable")
        await call("Network.setCookie", name="ray-authentication-token", value=token, domain=host, path="/")
        await call("Emulation.setDeviceMetricsOverride", width=1600, height=1000, deviceScaleFactor=1, mobile=False)
        for page, name in PAGES:
            await call("Page.navigate", url=url.rstrip("/") + "/" + page)
            await asyncio.sleep(8)  # the dashboard fetches its tables after the page loads
            shot = await call("Page.captureScreenshot", format="png")
            Path(f"{prefix}-{name}.png").write_bytes(base64.b64decode(shot["data"]))
            print(f"wrote {prefix}-{name}.png")


def main(argv: list[str] | None = None) -> int:
    url, prefix = (argv or sys.argv[1:])[:2]
    token_file = Path.home() / ".ray" / "auth_token"
    token = token_file.read_text().strip() if token_file.is_file() else ""
    proc = subprocess.Popen(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--remote-debugging-port={PORT}", "--user-data-dir=/tmp/shufflenas-chromium-profile", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            try:
                tabs = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{PORT}/json").read())
                break
            except OSError:
                time.sleep(0.3)
        else:
            print("error: chromium did not start its DevTools endpoint", file=sys.stderr)
            return 1
        ws_url = next(t for t in tabs if t["type"] == "page")["webSocketDebuggerUrl"]
        asyncio.run(_shoot(ws_url, url, prefix, token))
    finally:
        proc.terminate()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
