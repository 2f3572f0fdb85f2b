"""The Lepton Apps hub: ``streamlit run lepton_apps/ui/hub.py`` (or ``lepton-apps ui``).

Mounts the home page plus one page per installed domain that ships a page script. Domains
are found through the ``lepton_apps.domains`` entry points, so a new template appears here
without editing this file; one without a page yet is listed on the home page as coming soon.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from lepton_apps import domains
from lepton_apps.ui.common import guarded, page_path

HOME_PAGE = Path(__file__).with_name("home.py")
MONITOR_PAGE = Path(__file__).with_name("monitor.py")


def build_pages(specs: dict[str, domains.DomainSpec]) -> dict[str, list[st.Page]]:
    """Return the navigation: the home and monitor pages, then a page per domain whose page script exists."""
    home = st.Page(HOME_PAGE, title="Home", icon=":material/home:", default=True)
    monitor = st.Page(MONITOR_PAGE, title="Monitor", icon=":material/monitoring:", url_path="monitor")
    templates = []
    for spec in specs.values():
        path = page_path(spec)
        if path is not None:
            with guarded(f"Could not mount the {spec.title} page"):
                templates.append(st.Page(path, title=spec.title, icon=spec.icon, url_path=spec.name))
    return {"Lepton Apps": [home, monitor], "Templates": templates} if templates else {"Lepton Apps": [home, monitor]}


def main() -> None:
    """Configure the app, mount the pages and run the selected one."""
    st.set_page_config(page_title="Lepton Apps", page_icon=":material/apps:", layout="wide")
    specs: dict[str, domains.DomainSpec] = {}
    with guarded("Could not load the installed domain templates"):
        specs = domains.available_domains()
    st.navigation(build_pages(specs)).run()


if __name__ == "__main__":
    main()
