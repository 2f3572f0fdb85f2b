"""Medical page in a real browser through the hub: open it and upload one image."""
import pytest
from conftest import RENDER_TIMEOUT_MS
from test_medical_pipeline import tiny_bundle

from lepton_apps.registry import Registry

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def medical_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("medical_browser")
    return tiny_bundle(root, n=40, epochs=1, size=32, val_fraction=0.3, test_fraction=0.2)


def test_medical_page_uploads_an_image_and_shows_the_prediction(open_hub, hub_home, medical_bundle, tmp_path):
    bundle, data = medical_bundle
    Registry(hub_home).register(bundle, "medical-browser-test")
    page = open_hub("medical")
    page.get_by_text("Medical imaging").first.wait_for(timeout=RENDER_TIMEOUT_MS)
    page.get_by_text("Validation sensitivity").first.wait_for(timeout=RENDER_TIMEOUT_MS)
    image = sorted((data / "lesion").glob("*.png"))[0]
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(image))
    page.get_by_text(f"{image.name} — prediction:").first.wait_for(timeout=RENDER_TIMEOUT_MS)
    page.get_by_text("Decision at threshold").first.wait_for(timeout=RENDER_TIMEOUT_MS)
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    shot = tmp_path / "medical.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
