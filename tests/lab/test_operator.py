"""What an operator watches, on the real lab, during one migration: a real Prometheus
scrapes `/metrics` (with the scrape token) and sees it progress and land in the
histograms; a real headless browser shows it in the web view, running and then with
its final figures."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.lab.browser import By, WebDriverException, chromium
from tests.lab.conftest import Lab, ferry_json, wait_finished, wait_for, wait_samples
from tests.lab.prometheus import prometheus

NONE = "\u2013"  # what the page shows for a figure it does not have
Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(lab: Lab) -> Series:
    with lab.api() as api:
        r = api.get("/metrics")
    assert r.status_code == 200, r.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(r.text) for s in f.samples}


def one(series: Series, name: str, **labels: str) -> float | None:
    found = [v for (n, lab), v in series.items()
             if n == name and all(dict(lab).get(k) == x for k, x in labels.items())]
    assert len(found) <= 1, found
    return found[0] if found else None


def shown(browser: Any, css: str, attr: str | None = None) -> str | None:
    """The text (or an attribute) of the first element `css` selects, None if absent
    (the page redraws every second: an element may go stale between two calls)."""
    try:
        found = browser.find_elements(By.CSS_SELECTOR, css)
        if not found:
            return None
        return str(found[0].get_attribute(attr) if attr else found[0].text)
    except WebDriverException:
        return None


def test_prometheus_and_the_web_view_watch_a_migration(lab: Lab, make_vm, tmp_path: Path  # type: ignore[no-untyped-def]
                                                       ) -> None:
    done_before = one(scrape(lab), "ferry_migration_duration_seconds_count") or 0
    vm = make_vm("node1", memory=128, dirty=4, wss=32)
    with prometheus(lab.url, lab.ca) as prom, chromium() as browser:
        # without the token the page asks for it, and a wrong one is refused
        browser.get(f"{lab.url}/ui")
        wait_for(lambda: browser.find_element(By.ID, "login").is_displayed(), 30, "login")
        browser.find_element(By.ID, "token").send_keys("not-the-token-at-all")
        browser.find_element(By.CSS_SELECTOR, "#login button").click()
        wait_for(lambda: "refused" in (shown(browser, "#status") or ""), 30, "refusal")
        # the link `ferry ui` prints opens it, and the token leaves the address bar
        browser.get(ferry_json("ui")["url"])
        wait_for(lambda: shown(browser, f'.host[data-host="node1"] [data-vm="{vm}"]'), 30,
                 "the VM on node1 in the web view")
        assert "token" not in browser.current_url

        t0 = time.time()
        m = ferry_json("migrate", vm, "--to", "node2", "--bandwidth", "4")
        mid = m["id"]
        wait_samples(lab, mid)
        row = f'#migrations tr[data-migration-id="{mid}"]'
        wait_for(lambda: shown(browser, f"{row} .state") == "running" and
                 float(shown(browser, f"{row} .bar", "data-fraction") or 0) > 0, 60,
                 "the running migration and its progress in the web view")
        wait_for(lambda: shown(browser, "#detail", "data-migration-id") == str(mid) and
                 int(shown(browser, "#chart path.remaining", "data-points") or 0) >= 2, 60,
                 "its timeline drawn")
        live = f'{{vm="{vm}",id="{mid}",source="node1",destination="node2"}}'
        seen = wait_for(lambda: prom.query(f"ferry_migration_remaining_bytes{live}"), 30,
                        "Prometheus scraping the running migration")
        assert seen[0]["metric"]["policy"] == "auto"
        wait_for(lambda: prom.query(  # a rate, not a constant (one sample may read 0)
            f"max_over_time(ferry_migration_transfer_rate_bytes_per_second{live}[1m]) > 0"),
            30, "a transfer rate in Prometheus")

        done = wait_finished(lab, mid, timeout=300)
        assert done["state"] == "completed", done
        wait_for(lambda: shown(browser, "#detail", "data-state") == "completed" and
                 shown(browser, '#figures [data-field="total_ms"]') not in (None, NONE), 60,
                 "the final figures in the web view")
        assert shown(browser, '#figures [data-field="downtime_ms"]') not in (None, NONE)
        assert shown(browser, "#chart line.actual") is not None
        wait_for(lambda: shown(browser, f'.host[data-host="node2"] [data-vm="{vm}"]'), 30,
                 "the VM on node2 in the web view")
        browser.save_screenshot(os.environ.get("FERRY_UI_SCREENSHOT") or
                                str(tmp_path / "ui.png"))
        problems = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"
                    and "Unauthorized" not in e["message"]]  # the wrong token, above
        assert not problems, problems

        time.sleep(3)  # a few more scrapes after the end
        remaining = prom.query_range(f"ferry_migration_remaining_bytes{live}", t0, time.time())
        values = [float(v) for _, v in remaining[0]["values"]]
        assert len(set(values)) > 2 and values[-1] < max(values), values  # it moved
        assert not prom.query(f"ferry_migration_remaining_bytes{live}")  # gone at the end
        count = prom.query("ferry_migration_duration_seconds_count")
        assert float(count[0]["value"][1]) == done_before + 1
    after = scrape(lab)
    assert (one(after, "ferry_migration_transferred_bytes_sum") or 0) >= \
        done["transferred_bytes"]
    assert one(after, "ferry_hosts", state="up") == 3
