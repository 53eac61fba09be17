"""Screenshots of the analyst console (docs/console/*.png) from a real
server: scores a little simulated traffic (some of it flagged), records two
verdicts so the charts have something to count, and photographs the queue,
an alert and the model charts in Debian's headless Chromium (Playwright by
executable path; nothing downloaded).

Usage, with a trained champion and a server whose key has the score,
review and feedback scopes (GENDETECT_API_KEY has them all):

    GENDETECT_API_KEY=... gendetect serve --port 8000 &
    python scripts/console_screenshots.py --url http://127.0.0.1:8000 --key ...
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import httpx

from gendetect.data.simulator import simulate_transactions

OUT = Path(__file__).resolve().parent.parent / "docs" / "console"
# Fresh ids on every run: a server refuses an id again with other content.
_ids = itertools.count(int(time.time() * 1000))


def _records(n: int, flagged: int) -> list[dict[str, object]]:
    frame = simulate_transactions(n_customers=60, n_terminals=120, days=3, seed=7).head(n)
    out = [{"transaction_id": next(_ids), "timestamp": row.timestamp.isoformat(),
            "customer_id": int(row.customer_id), "terminal_id": int(row.terminal_id),
            "amount": float(row.amount)} for row in frame.itertuples()]
    # Amounts far outside what the model saw: alerts for the queue.
    for i, rec in enumerate(out[:flagged]):
        rec["amount"] = 25_000.0 + 1_250.0 * i
    return out


def seed(url: str, key: str, n: int, flagged: int) -> list[int]:
    """Score the traffic; two verdicts on the oldest alerts; the alerts."""
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30) as c:
        for rec in _records(n, flagged):
            c.post("/v1/score", json=rec).raise_for_status()
        alerts = c.get("/v1/alerts", params={"limit": 500}).json()["alerts"]
        ids = [a["transaction_id"] for a in alerts]
        for tid, label, note in zip(ids[-2:], ("fraud", "genuine"),
                                    ("card used abroad within minutes", None), strict=False):
            body = {"transaction_id": tid, "label": label, "analyst": "ann",
                    **({"note": note} if note else {})}
            c.post("/v1/feedback", json=body).raise_for_status()
        return ids[:-2]


def shoot(url: str, key: str, open_ids: list[int], chromium: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium)
        page = browser.new_page(base_url=url, viewport={"width": 1280, "height": 860})
        page.goto("/console")
        page.get_by_label("API key").fill(key)
        page.get_by_label("Your name").fill("ann")
        page.get_by_role("button", name="Sign in").click()
        page.locator("#queue-table").wait_for()
        page.keyboard.press("j")
        page.screenshot(path=str(out / "queue.png"), full_page=True)
        page.goto(f"{url}/console#/alert/{open_ids[0]}")
        page.locator("#top-features").wait_for()
        page.screenshot(path=str(out / "alert.png"), full_page=True)
        page.goto(f"{url}/console#/stats")
        page.locator("#chart-precision").wait_for()
        page.screenshot(path=str(out / "models.png"), full_page=True)
        browser.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--key", required=True, help="a key with score, review and feedback")
    ap.add_argument("--records", type=int, default=120)
    ap.add_argument("--flagged", type=int, default=8)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    open_ids = seed(args.url, args.key, args.records, args.flagged)
    shoot(args.url, args.key, open_ids, args.chromium, args.out)
    print(f"screenshots in {args.out}")


if __name__ == "__main__":
    main()
