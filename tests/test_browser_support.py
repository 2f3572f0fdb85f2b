"""The support page in the hub, in a real browser: ask one question and see the answer, in English and in Chinese
with the Chinese glyphs drawn by a Noto CJK font (fixtures in conftest.py)."""
import json
from pathlib import Path

import pytest
from conftest import RENDER_TIMEOUT_MS, ROOT, _unavailable, choose_option
from test_support_fixtures import demo_build, demo_bundle, zh_build  # noqa: F401

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


# Debian's fonts-noto-cjk (scripts/ensure_debian.sh from `make test`); without it Chromium draws Chinese as boxes
NOTO_CJK = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
LOST_CARD = "請問信用卡怎麼掛失"


def _platform_fonts(page, text: str) -> list[dict]:
    """Return Chromium's platform fonts ({familyName, glyphCount, ...}) that drew the text node holding ``text``
    (DevTools CSS.getPlatformFontsForNode: the fonts really used, not the CSS font-family list)."""
    marked = page.evaluate("""(text) => {
        const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
        for (let n = walk.nextNode(); n; n = walk.nextNode()) {
            if (n.textContent.includes(text)) { n.parentElement.setAttribute("data-font-probe", "1"); return true; }
        }
        return false;
    }""", text)
    assert marked, f"no text node holds {text!r}"
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": "[data-font-probe]"})["nodeId"]
    fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    cdp.detach()
    return fonts


def test_support_chat_answers_a_chinese_question_in_chromium_with_a_cjk_font(open_hub, hub_home, zh_build,
                                                                              tmp_path):
    if not NOTO_CJK.is_file():
        _unavailable(f"{NOTO_CJK} is missing; run 'make test' (scripts/ensure_debian.sh) or apt-get install "
                     "fonts-noto-cjk")
    records = json.loads((ROOT / "apps/support/demo_kb_zh.json").read_text(encoding="utf-8"))["records"]
    answer = next(r["answer"] for r in records if r["id"] == "lost-card")
    Registry(hub_home).register(zh_build[2], "support-zh-browser")
    page = open_hub("support")
    sidebar = page.get_by_test_id("stSidebar")
    # the sidebar's first select box is the model (the second, the backend); the English demo may be listed first
    choose_option(page, sidebar.get_by_test_id("stSelectbox").first, "support-zh-browser")
    page.get_by_text("智能客服", exact=True).first.wait_for(timeout=RENDER_TIMEOUT_MS * 3)   # follows the KB
    box = page.get_by_test_id("stChatInputTextArea")
    assert box.get_attribute("placeholder").startswith("请输入您的问题")
    box.fill(LOST_CARD)
    box.press("Enter")
    # the first answer loads multilingual-e5-small (118M parameters, ONNX) in the hub: allow for a loaded machine
    page.get_by_text(answer, exact=True).first.wait_for(timeout=RENDER_TIMEOUT_MS * 8)
    page.get_by_text("匹配的问题：lost-card", exact=False).first.wait_for(timeout=RENDER_TIMEOUT_MS)
    page.get_by_text("语言：中文 (zh)", exact=False).first.wait_for(timeout=RENDER_TIMEOUT_MS)
    page.get_by_text("来源（", exact=False).first.click()      # open the sources: the top one is the lost-card FAQ
    # the grid is drawn on a canvas; its cells are also in a hidden accessible table: row 0 = the top source
    grid = page.get_by_test_id("stDataFrame").first
    grid.get_by_test_id("glide-cell-5-0").wait_for(state="attached", timeout=RENDER_TIMEOUT_MS)
    assert grid.get_by_test_id("glide-cell-0-0").text_content() == "lost-card"
    assert grid.get_by_test_id("glide-cell-5-0").text_content() == "银行卡丢了怎么办？"    # the FAQ's own question
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator('[data-testid="stAlert"]').filter(has_text="无法").count() == 0
    fonts = _platform_fonts(page, answer)
    cjk = [f for f in fonts if "CJK" in f["familyName"]]
    assert cjk and all(f["familyName"].startswith("Noto") for f in cjk), fonts
    han = sum(1 for c in answer if "\u4e00" <= c <= "\u9fff")
    assert sum(f["glyphCount"] for f in cjk) >= han, fonts          # every Han character drawn by Noto CJK
    assert page.evaluate("document.fonts.check('16px \"Noto Sans CJK SC\"')")
    shot = tmp_path / "support-chat-zh.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
