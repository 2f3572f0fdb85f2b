"""The support page in the hub, in a real browser: ask one question and see the answer (fixtures in conftest.py)."""
import pytest
from conftest import RENDER_TIMEOUT_MS
from test_support_fixtures import demo_build, demo_bundle  # noqa: F401

from lepton_apps.registry import Registry

pytestmark = pytest.mark.browser


def test_support_chat_answers_a_question_in_chromium(open_hub, hub_home, demo_bundle, tmp_path):
    Registry(hub_home).register(demo_bundle, "support-demo-browser")
    page = open_hub("support")
    box = page.get_by_test_id("stChatInputTextArea")
    box.wait_for(timeout=RENDER_TIMEOUT_MS)
    box.fill("my card was stolen")
    box.press("Enter")
    page.get_by_text("Freeze the card immediately", exact=False).first.wait_for(timeout=RENDER_TIMEOUT_MS * 3)
    page.get_by_text("Matched FAQ: lost-card", exact=False).first.wait_for(timeout=RENDER_TIMEOUT_MS)
    assert page.locator('[data-testid="stException"]').count() == 0
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill("<b>bold?</b> what's the weather on Mars")
    box.press("Enter")
    page.get_by_text("Connecting you to a human agent", exact=False).first.wait_for(timeout=RENDER_TIMEOUT_MS * 3)
    assert page.get_by_text("<b>bold?</b> what's the weather on Mars", exact=False).count() >= 1
    page.screenshot(path=str(tmp_path / "support-chat.png"), full_page=True)
    assert (tmp_path / "support-chat.png").stat().st_size > 20_000
