"""Fraud page in a real browser through the hub (fixtures ``open_hub`` and ``hub_home`` from conftest.py)."""
import pytest
from conftest import RENDER_TIMEOUT_MS

from lepton_apps.registry import Registry
from test_finance_pipeline import fraud_bundle, fraud_data  # noqa: F401 - shared session fixtures

pytestmark = pytest.mark.browser


def test_finance_page_renders_alert_queue_in_chromium(open_hub, hub_home, fraud_bundle, tmp_path):  # noqa: F811
    Registry(hub_home).register(fraud_bundle, "finance-browser-test")
    page = open_hub("finance")
    page.get_by_text("Fraud detection").first.wait_for(timeout=RENDER_TIMEOUT_MS)
    page.get_by_text("Alert queue:").first.wait_for(timeout=RENDER_TIMEOUT_MS)
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator('[data-testid="stMetric"]').count() >= 4
    assert page.get_by_text("Why this score").count() == 1
    shot = tmp_path / "finance.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
