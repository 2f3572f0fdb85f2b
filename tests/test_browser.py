"""The hub in a real browser (fixtures ``open_hub``, ``hub_home``, ``browser`` live in conftest.py)."""
import struct
from pathlib import Path

import pytest
from conftest import RENDER_TIMEOUT_MS

pytestmark = pytest.mark.browser


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_home_page_renders_in_chromium(open_hub, tmp_path):
    page = open_hub()
    title = page.locator("h1").first
    title.wait_for(timeout=RENDER_TIMEOUT_MS)
    assert title.inner_text().strip() == "Lepton Apps"
    assert page.title() == "Lepton Apps"
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.get_by_text("No models in the registry yet").count() == 1
    shot = tmp_path / "hub-home.png"
    page.screenshot(path=str(shot), full_page=True)
    width, height = _png_size(shot)
    assert width >= 1000 and height >= 600
    assert shot.stat().st_size > 20_000, "the screenshot is too small to show a rendered page"
