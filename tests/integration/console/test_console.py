"""The analyst console in real headless Chromium against a real server:
sign-in and scopes, the queue against /v1/alerts, verdicts by keyboard and
their effect on the database, notes with HTML shown as text, the precision
chart, the console offline, and an axe-core accessibility check."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.integration.conftest import audit_db, table_rows

from .conftest import ANALYST, BIG_ID, READER, SCORER, alerts_api, sign_in

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.integration.conftest import ServerProcess

    from .conftest import Watch

pytestmark = pytest.mark.integration

PAYLOADS = ('<script>alert("note")</script>', '<img src=x onerror="alert(\'img\')">')


def queue_ids(page: Page) -> list[int]:
    return [int(x) for x in page.locator("#queue-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.id)")]


def verdict_rows(server: ServerProcess, tid: int) -> list[dict[str, Any]]:
    return [v for v in table_rows(audit_db(server.home), "verdicts") if v["transaction_id"] == tid]


def test_a_scoring_key_is_refused_and_an_analyst_key_signs_in(
        page: Page, console_server: ServerProcess, watch: Watch) -> None:
    sign_in(page, SCORER)
    expect(page.get_by_role("alert")).to_contain_text("needs a key with the review scope")
    expect(page.locator("#nav")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0  # a refused key is not kept

    sign_in(page, ANALYST)
    expect(page.locator("#queue-table")).to_be_visible()
    # The key lives in this tab's session storage only: no cookie, no URL.
    assert page.evaluate("sessionStorage.getItem('gendetect.console.key')") == ANALYST
    assert page.context.cookies() == []
    assert ANALYST not in page.url
    watch.clean()


def test_the_queue_lists_what_the_api_lists(
        page: Page, console_server: ServerProcess, watch: Watch) -> None:
    sign_in(page)
    expect(page.locator("#queue-table")).to_be_visible()
    page.get_by_label("Page size").select_option("5")
    page.get_by_role("button", name="Apply").click()
    first = alerts_api(console_server.url, limit=5)
    expect(page.locator("#queue-table tbody tr")).to_have_count(len(first["alerts"]))
    assert queue_ids(page) == [a["transaction_id"] for a in first["alerts"]]
    assert first["next_cursor"] is not None  # the traffic fills more than a page
    # The next page by the API's cursor, appended.
    second = alerts_api(console_server.url, limit=5, cursor=first["next_cursor"])
    page.get_by_role("button", name="Load more").click()
    want = [a["transaction_id"] for a in first["alerts"] + second["alerts"]]
    expect(page.locator("#queue-table tbody tr")).to_have_count(len(want))
    assert queue_ids(page) == want
    # Each row: time, id, amount, risk, reasons, model version as the API says.
    top = first["alerts"][0]
    cells = page.locator("#queue-table tbody tr").first.locator("td").all_inner_texts()
    assert cells[0].startswith(top["decided_at"][:19].replace("T", " "))
    assert cells[1] == str(top["transaction_id"])
    assert cells[2] == f"{top['context']['record']['amount']:,.2f}"  # the audit's record
    assert cells[3] == f"{top['risk'] * 100:.1f}%"
    assert cells[4].split(" (")[0] == top["top_reasons"][0]["reason"]
    assert cells[5] == top["model"]["version"]
    watch.clean()


def every_alert(url: str, **params: Any) -> list[dict[str, Any]]:
    """Every page of /v1/alerts with these parameters."""
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = alerts_api(url, limit=500, **params, **({"cursor": cursor} if cursor else {}))
        out += page["alerts"]
        cursor = page["next_cursor"]
        if cursor is None:
            return out


def riskiest_in_db(server: ServerProcess, reason: str | None = None) -> list[int]:
    """The queue riskiest first, from the audit's tables: flagged, without a
    verdict, by (risk, decided_at, id) descending (SQLite keeps times as
    ISO text and ids as hex: both order as the values do)."""
    db = audit_db(server.home)
    voted = {v["transaction_id"] for v in table_rows(db, "verdicts")}
    rows = [d for d in table_rows(db, "decisions")
            if d["is_fraud"] and d["transaction_id"] not in voted
            and (reason is None or reason in [r["reason"] for r in json.loads(d["top_reasons"])])]
    rows.sort(key=lambda d: (d["risk"], d["decided_at"], d["id"]), reverse=True)
    return [d["transaction_id"] for d in rows]


def load_all(page: Page) -> None:
    while page.get_by_role("button", name="Load more").is_visible():
        count = page.locator("#queue-table tbody tr").count()
        page.get_by_role("button", name="Load more").click()
        expect(page.locator("#queue-table tbody tr")).not_to_have_count(count)


def test_riskiest_first_and_the_reason_filter_come_from_the_server_across_pages(
        page: Page, console_server: ServerProcess, watch: Watch) -> None:
    sign_in(page)
    expect(page.locator("#queue-table")).to_be_visible()
    page.get_by_label("Order").select_option("riskiest")
    page.get_by_label("Page size").select_option("5")
    page.get_by_role("button", name="Apply").click()
    first = alerts_api(console_server.url, limit=5, order="riskiest")
    assert first["next_cursor"] is not None  # more than one page
    expect(page.locator("#queue-table caption")).to_contain_text("riskiest first")
    expect(page.locator("#queue-table tbody tr")).to_have_count(len(first["alerts"]))
    assert queue_ids(page) == [a["transaction_id"] for a in first["alerts"]]
    load_all(page)
    want = riskiest_in_db(console_server)
    assert queue_ids(page) == want
    assert [a["transaction_id"] for a in every_alert(console_server.url, order="riskiest")
            ] == want

    # The least common reason: the filter leaves out any alert without it
    # (the store's tests hold alerts that do not all share a reason).
    counts = Counter(r["reason"] for a in every_alert(console_server.url)
                     for r in a["top_reasons"])
    reason = min(counts, key=lambda r: (counts[r], r))
    page.get_by_label("Reason").fill(reason)
    page.get_by_role("button", name="Apply").click()
    first = alerts_api(console_server.url, limit=5, order="riskiest", reason=reason)
    expect(page.locator("#queue-table tbody tr")).to_have_count(len(first["alerts"]))
    assert queue_ids(page) == [a["transaction_id"] for a in first["alerts"]]
    load_all(page)
    want = riskiest_in_db(console_server, reason)
    assert want and queue_ids(page) == want
    assert [a["transaction_id"] for a in every_alert(console_server.url, order="riskiest",
                                                     reason=reason)] == want
    expect(page.locator("#queue-table caption")).not_to_contain_text("loaded")
    watch.clean()


def test_an_alert_shows_the_record_and_its_behaviour_features(
        page: Page, console_server: ServerProcess, watch: Watch) -> None:
    alert = alerts_api(console_server.url, limit=1)["alerts"][0]
    context = alert["context"]
    assert set(context["record"]) == {"amount"}  # nothing personal, no ids
    sign_in(page)
    expect(page.locator("#queue-table")).to_be_visible()
    page.goto(f"/console#/alert/{alert['transaction_id']}")
    record = page.locator("#record-fields tbody tr")
    expect(record).to_have_count(1)
    assert record.first.locator("th").inner_text() == "amount"
    amount = f"{context['record']['amount']:,.4f}".rstrip("0").rstrip(".")
    assert record.first.locator("td").inner_text() == amount
    behaviour = page.locator("#behaviour-features tbody th")
    expect(behaviour).to_have_count(len(context["behaviour"]))
    assert behaviour.all_inner_texts() == list(context["behaviour"])
    watch.clean()


def test_mark_fraud_by_keyboard_stores_it_and_the_alert_leaves_the_queue(
        page: Page, console_server: ServerProcess, watch: Watch) -> None:
    sign_in(page)
    expect(page.locator("#queue-table")).to_be_visible()
    tid = queue_ids(page)[0]
    assert tid == BIG_ID  # the newest: past 2^53, kept exact from the API to the verdict
    page.keyboard.press("j")  # selects the first row
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=f"Alert: transaction {tid}")).to_be_visible()
    expect(page.locator("#find-customer")).to_contain_text("in your own systems")
    page.keyboard.press("f")
    expect(page.get_by_role("status")).to_contain_text(f"transaction {tid} marked fraud")
    expect(page.locator("#current-verdict")).to_have_text("Current verdict: fraud")

    rows = verdict_rows(console_server, tid)
    assert [(v["label"], v["analyst"], v["key_name"]) for v in rows] == [
        ("fraud", "ann", "analysts")]
    assert tid not in [a["transaction_id"] for a in alerts_api(console_server.url, limit=500)[
        "alerts"]]
    # The same verdict again changes nothing (as the API).
    page.keyboard.press("f")
    expect(page.get_by_role("status")).to_contain_text("Already marked fraud")
    assert len(verdict_rows(console_server, tid)) == 1

    page.keyboard.press("q")
    expect(page.locator("#queue-table")).to_be_visible()
    assert tid not in queue_ids(page)
    watch.clean()


def test_a_note_and_a_name_holding_html_are_shown_as_text(
        page: Page, console_server: ServerProcess, watch: Watch) -> None:
    name = '<b onmouseover="alert(1)">eve</b>'
    sign_in(page, analyst=name)
    expect(page.locator("#who-name")).to_have_text(name)
    tid = alerts_api(console_server.url, limit=1)["alerts"][0]["transaction_id"]
    page.goto(f"/console#/alert/{tid}")
    note = " ".join(PAYLOADS)
    page.get_by_label("Note").fill(note)
    page.get_by_role("button", name="Mark genuine").click()
    expect(page.get_by_role("status")).to_contain_text(f"transaction {tid} marked genuine")

    history = page.locator("#verdict-history tbody tr").last
    expect(history.locator("td.note")).to_have_text(note)
    expect(history.locator("td.analyst")).to_have_text(name)
    # Text, not markup: no element came from the payloads, no script ran.
    assert page.locator("#view img, #view script, #view b").count() == 0
    assert [(v["label"], v["note"], v["analyst"]) for v in verdict_rows(console_server, tid)] == [
        ("genuine", note, name)]
    watch.clean()


def test_a_refused_verdict_is_taken_back_with_the_reason(
        page: Page, console_server: ServerProcess, watch: Watch) -> None:
    sign_in(page, READER)  # review without feedback: reads, cannot decide
    expect(page.locator("#queue-table")).to_be_visible()
    tid = queue_ids(page)[0]
    page.goto(f"/console#/alert/{tid}")
    page.get_by_label("Note").fill("kept for the retry")
    page.get_by_role("button", name="Mark fraud").click()
    expect(page.get_by_role("alert")).to_contain_text("The verdict was not saved")
    expect(page.get_by_role("alert")).to_contain_text("not allowed")
    expect(page.locator("#current-verdict")).to_have_text("No verdict yet.")
    expect(page.get_by_label("Note")).to_have_value("kept for the retry")
    assert verdict_rows(console_server, tid) == []
    page.keyboard.press("Escape")
    page.keyboard.press("q")
    expect(page.locator("#queue-table")).to_be_visible()
    assert tid in queue_ids(page)
    watch.clean()


def test_the_precision_chart_counts_the_verdicts(
        page: Page, console_server: ServerProcess, watch: Watch) -> None:
    # At least one of each verdict, whichever tests ran before.
    labels = {v["label"] for v in table_rows(audit_db(console_server.home), "verdicts")}
    open_ids = [a["transaction_id"] for a in alerts_api(console_server.url, limit=500)["alerts"]]
    for label, tid in zip(sorted({"fraud", "genuine"} - labels), open_ids, strict=False):
        r = httpx.post(f"{console_server.url}/v1/feedback", headers={"X-API-Key": ANALYST},
                       json={"transaction_id": tid, "label": label, "analyst": "ann"}, timeout=30)
        assert r.status_code == 200, r.text
    db = audit_db(console_server.home)
    flagged = {d["transaction_id"]: d["model_version"]
               for d in table_rows(db, "decisions") if d["is_fraud"]}
    latest: dict[int, str] = {}
    for v in sorted(table_rows(db, "verdicts"), key=lambda v: (v["labelled_at"], v["id"])):
        latest[v["transaction_id"]] = v["label"]
    version = next(iter(flagged.values()))
    reviewed = [label for tid, label in latest.items() if flagged.get(tid) == version]
    fraud = reviewed.count("fraud")

    sign_in(page)
    expect(page.locator("#queue-table")).to_be_visible()
    page.get_by_role("link", name="How the models are doing").click()
    bar = page.locator(f'#chart-precision g.version[data-version="{version}"]')
    expect(bar).to_contain_text(f"{fraud} of {len(reviewed)} reviewed confirmed fraud "
                                f"({round(100 * fraud / len(reviewed))}%)")
    # The other charts count the same alerts.
    alerts = sum(1 for v in flagged.values() if v == version)
    expect(page.locator("#chart-days")).to_contain_text(f"{alerts} alerts")
    expect(page.locator("#chart-waits")).to_contain_text(f"({len(reviewed)} reviewed)")
    expect(page.locator("#chart-backlog")).to_contain_text(
        f"{alerts - len(reviewed)} alert")
    watch.clean()


def test_the_console_works_with_the_network_cut_off(
        page: Page, console_server: ServerProcess, watch: Watch) -> None:
    """Every request off the server is aborted (the context fixture); the
    pages load all the same, and none tried to reach anything else."""
    response = page.goto("/console")
    assert response is not None
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    sign_in(page)
    expect(page.locator("#queue-table")).to_be_visible()
    tid = queue_ids(page)[0]
    page.goto(f"/console#/alert/{tid}")
    expect(page.locator("#top-features li").first).to_be_visible()
    page.goto("/console#/stats")
    expect(page.locator("#chart-days svg")).to_be_visible()
    loaded = page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(u.startswith(console_server.url) for u in loaded), loaded
    watch.clean()


def test_axe_finds_no_accessibility_violations(
        page: Page, console_server: ServerProcess, watch: Watch) -> None:
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()
    page.goto("/console")
    expect(page.get_by_label("API key")).to_be_visible()
    found = {"sign-in": axe.run(page).response["violations"]}
    sign_in(page)
    expect(page.locator("#queue-table")).to_be_visible()
    found["queue"] = axe.run(page).response["violations"]
    tid = queue_ids(page)[0]
    page.goto(f"/console#/alert/{tid}")
    expect(page.locator("#top-features")).to_be_visible()
    found["alert"] = axe.run(page).response["violations"]
    page.goto("/console#/stats")
    expect(page.locator("#chart-precision")).to_be_visible()
    found["stats"] = axe.run(page).response["violations"]
    summary = {view: [(v["id"], [n["target"] for n in v["nodes"]]) for v in found[view]]
               for view in found}
    assert all(not v for v in found.values()), summary
    watch.clean()


@pytest.mark.parametrize(("entry", "text"), [
    ({"feature": "amount", "contribution": 0.41, "value": 1250.0, "expected": 47.6},
     "amount 1,250.00, expected about 48"),
    ({"feature": "amount", "contribution": 0.41, "value": 1250.0, "expected": None},
     "amount 1,250.00 (41% of the explanation)"),
    ({"feature": "log_amount", "contribution": 0.5, "value": 1250.0, "expected": 1234.5},
     "log_amount 1,250.00, expected about 1,200"),
    ({"feature": "tx_count_1d", "contribution": 0.2}, "tx_count_1d (20% of the explanation)"),
])
def test_top_features_read_with_what_the_model_expected(
        page: Page, console_server: ServerProcess, entry: dict[str, Any], text: str) -> None:
    """The console's own formatting module, as the browser loads it; the
    `value`/`expected` fields come from the quality work (nullable)."""
    page.goto("/console")
    got = page.evaluate("""async (entry) => {
        const format = await import('/console/assets/format.js');
        return [format.featureText(entry), format.amountOf({top_features: [entry]})];
    }""", entry)
    assert got[0] == text
    assert got[1] == ("1,250.00" if re.match("(log_)?amount", text) else "—")


def test_an_alert_shows_what_the_model_expected(
        page: Page, console_server: ServerProcess, watch: Watch) -> None:
    """Until the served model reports `value` and `expected`, the real
    decision is served to the page with them added (only this one read is
    stubbed) and the alert reads them."""
    tid = alerts_api(console_server.url, limit=1)["alerts"][0]["transaction_id"]
    real = httpx.get(f"{console_server.url}/v1/decisions/{tid}",
                     headers={"X-API-Key": ANALYST}, timeout=30).json()
    first = real["decision"]["top_features"][0]
    real["decision"]["top_features"][0] = {**first, "feature": "amount", "value": 1250.0,
                                           "expected": 47.6}
    page.route(f"**/v1/decisions/{tid}", lambda route: route.fulfill(json=real))
    sign_in(page)
    expect(page.locator("#queue-table")).to_be_visible()
    page.goto(f"/console#/alert/{tid}")
    expect(page.locator("#top-features li").first).to_have_text(
        "amount 1,250.00, expected about 48")
    watch.clean()
