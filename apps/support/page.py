"""Streamlit page of the support template: chat, feedback, knowledge-base rebuild, model report, and the
review queue of the support loop (candidate paraphrases accepted, reassigned or rejected, then applied).

Runs mounted by the hub (``lepton-apps ui``) or alone: ``streamlit run apps/support/page.py``.
Customer text is always shown with ``st.text`` (never interpreted as Markdown or HTML).
The page speaks English or Chinese (sidebar switch, ``page_texts.TEXTS``); it opens in the language of the chosen
bundle's knowledge base and follows the bundle until the user picks a language. Answers and hand-off messages come
from the bundle, already in the customer's language.
"""
from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from lepton_apps.support.page_texts import (LANGUAGES, TEXTS, candidate_reason, escalation_text, handoff_text,
                                            language_name, page_language, sentiment_name, stage_text)
from lepton_apps.ui.common import backend_picker, cached_predictor, guarded, show_backend

CHAT_KEY = "support_chat"
LANG_KEY = "support_lang"               # the sidebar switch: "en" or "zh"
# the language the user picked, kept outside the widget: Streamlit drops a widget's state when the hub shows another
# page, and a picked language must survive that (it then no longer follows the bundle)
LANG_CHOSEN_KEY = "support_lang_chosen"


def load_assistant(path: Path, backend: str | None = None):
    """Return the SupportAssistant of the bundle at ``path`` (questions encoded by ``backend``) from the hub's
    shared model cache."""
    return cached_predictor(path, "support", backend)


def pick_bundle(t: dict[str, str]) -> Path | None:
    """Sidebar: choose a registered support bundle or type a path; return its folder or None."""
    from lepton_apps.registry import Registry

    reg = Registry()
    entries = {e.name: e for e in reg.list("support")}
    # options are the plain names (the widget's value stays valid when an alias such as "latest" moves)
    choice = st.sidebar.selectbox(t["model_select"], list(entries), index=0 if entries else None, key="support_bundle",
                                  format_func=lambda n: n + (f"  ({', '.join(entries[n].aliases)})"
                                                             if entries[n].aliases else ""),
                                  placeholder=t["model_none"])
    typed = st.sidebar.text_input(t["bundle_path"], value="", key="support_bundle_path")
    if typed.strip():
        return Path(typed.strip()).expanduser()
    if choice is None:
        st.info(t["no_model"])
        return None
    return entries[choice].path


def feedback_store(t: dict[str, str]):
    """Return the FeedbackStore on the service database ($LEPTON_DB_URL, else lepton.db in the registry folder),
    opened once per process, and name that database in the sidebar with its password hidden."""
    import os

    from lepton_apps.store import DB_ENV
    from lepton_apps.support.feedback import LEGACY_ENV

    with st.spinner(t["opening_feedback"]):
        store = _open_feedback(os.environ.get(DB_ENV), os.environ.get("LEPTON_HOME"), os.environ.get(LEGACY_ENV))
    new = "" if store.opened else t["feedback_db_new"]
    st.sidebar.caption(t["feedback_db"].format(location=store.location) + new)
    return store


@st.cache_resource(show_spinner=False, max_entries=8)
def _open_feedback(db_url: str | None, home: str | None, legacy: str | None):
    # The arguments are the cache key: the settings that choose the database and the old feedback file.
    from lepton_apps.support.feedback import FeedbackStore

    return FeedbackStore()


THUMB_UP, THUMB_DOWN = ":material/thumb_up:", ":material/thumb_down:"
SOURCE_COLUMNS = ("faq_id", "score", "rerank", "dense", "lexical", "matched_text", "question")  # rerank: 2nd stage


def render_reply(i: int, turn: dict, store, t: dict[str, str]) -> None:
    """Show one assistant reply: answer (or the bundle's hand-off text and the reason, in the page's language),
    matched FAQ + confidence, intent, sentiment and the detected language of the message, escalation badge, sources,
    feedback (thumbs buttons, or a note when ``store`` is None); the page's own words from ``t``."""
    r = turn["reply"]
    with st.chat_message("assistant"):
        if r["handoff"]:
            st.warning(t["handoff"], icon=":material/support_agent:")
            if r.get("answer"):
                st.text(r["answer"])   # the bundle's hand-off message, in the customer's language
            st.caption(t["handoff_reason"].format(reason=handoff_text(r, t)))
        else:
            st.text(r["answer"])
            st.caption(t["matched"].format(faq_id=r["faq_id"], confidence=r["confidence"]))
        tags = []
        if r.get("intent"):
            tags.append(t["intent"].format(intent=r["intent"], team=r.get("team") or r["intent"]))
        if r.get("sentiment"):
            tags.append(t["sentiment"].format(sentiment=sentiment_name(r["sentiment"], t)))
        if r.get("language"):
            tags.append(t["detected_language"].format(name=language_name(r["language"], t)))
        if tags:
            st.caption(" · ".join(tags))
        if r.get("escalate"):
            st.badge(t["escalate"].format(reason=escalation_text(r, t)), icon=":material/priority_high:", color="red")
        if r.get("truncated"):
            st.caption(t["truncated"])
        if r["sources"]:
            with st.expander(t["sources"].format(n=len(r["sources"]))):
                import pandas as pd

                columns = [c for c in SOURCE_COLUMNS if c != "rerank" or any(s.get("rerank") is not None
                                                                             for s in r["sources"])]
                frame = pd.DataFrame(r["sources"])[columns]
                st.dataframe(frame.rename(columns={c: t[f"col_{c}"] for c in columns}), hide_index=True)
        rated = turn.get("rated")
        if store is None:
            st.caption(t["rating_off"])
        elif rated:
            # Material icons, not emoji: browsers without an emoji font (Debian Chromium) draw emoji as empty boxes
            st.caption(t["thanks"] + (THUMB_UP if rated > 0 else THUMB_DOWN))
        else:
            up, down, _ = st.columns([1, 1, 8])
            for col, value, label, tip in ((up, 1, THUMB_UP, t["helpful"]), (down, -1, THUMB_DOWN, t["not_helpful"])):
                if col.button(label, key=f"support_fb_{i}_{value}", help=tip):
                    with guarded(t["err_rating"]):
                        store.add(turn["question"], r["answer"], r["faq_id"], value, r["model_version"],
                                  confidence=r["confidence"], handoff=r["handoff"])
                        turn["rated"] = value
                        st.rerun()


def chat_tab(bot, store, t: dict[str, str]) -> None:
    """The chat: history, the input box, and a reply per question."""
    history = st.session_state.setdefault(CHAT_KEY, [])
    question = st.chat_input(t["chat_placeholder"], key="support_chat_input")
    if question is not None:
        with guarded(t["err_answer"]):
            reply = bot.answer(question)
            history.append({"question": reply.question or question, "reply": reply.to_dict(), "rated": 0})
    show_backend(bot, t["encoded_by"])
    if not history:
        st.caption(t["chat_empty"])
    for i, turn in enumerate(history):
        with st.chat_message("user"):
            st.text(turn["question"][:2000])
        render_reply(i, turn, store, t)
    if history and st.button(t["clear"], key="support_clear"):
        st.session_state[CHAT_KEY] = []
        st.rerun()


def feedback_tab(store, t: dict[str, str]) -> None:
    """Stored ratings with a CSV download (fine-tuning data)."""
    df = store.frame()
    st.caption(t["fb_count"].format(n=len(df), location=store.location))
    if store.imported:
        st.info(t["fb_imported"].format(n=store.imported, path=store.legacy_path), icon=":material/move_up:")
    if len(df):
        st.metric(t["fb_thumbs_up"], f"{(df['rating'] > 0).mean():.0%}")
        st.dataframe(df, hide_index=True)
    st.download_button(t["fb_download"], store.to_csv(), file_name="support_feedback.csv",
                       mime="text/csv", key="support_fb_csv")


def kb_tab(bundle_path: Path | None, t: dict[str, str]) -> None:
    """Upload a KB file, validate it, and rebuild the index into a new registered bundle with a progress bar."""
    from lepton_apps.support.data import read_kb

    st.write(t["kb_intro"])
    upload = st.file_uploader(t["kb_file"], type=["csv", "json", "jsonl"], key="support_kb_upload")
    if upload is None:
        return
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="lepton-support-kb-"))
    path = folder / Path(upload.name).name
    path.write_bytes(upload.getvalue())
    kb = None
    with guarded(t["err_kb_invalid"]):
        kb = read_kb(path)
    if kb is None:
        return
    st.success(t["kb_valid"].format(n=len(kb), p=int(kb["paraphrases"].map(len).sum())))
    st.dataframe(kb[["id", "question", "category"]].head(50), hide_index=True)
    if st.button(t["kb_rebuild"], key="support_rebuild", type="primary"):
        with guarded(t["err_rebuild"]):
            from lepton_apps.registry import Registry
            from lepton_apps.support.config import SupportConfig
            from lepton_apps.support.training import train

            encoder = "all-MiniLM-L6-v2"
            if bundle_path is not None:
                encoder = load_assistant(bundle_path).encoder.name
            bar = st.progress(0.0, text=t["starting"])
            out = folder / "bundle"
            train(SupportConfig(kb=str(path), out=str(out), encoder=encoder, progress=False),
                  progress=lambda stage, frac: bar.progress(min(1.0, frac), text=stage_text(stage, t)))
            name = f"support-kb-{time.strftime('%Y%m%d-%H%M%S')}"
            Registry().register(out, name)
            st.success(t["kb_registered"].format(name=name))


def model_tab(bundle_path: Path, t: dict[str, str]) -> None:
    """Bundle metrics and the evaluation plots saved in it."""
    from lepton_apps.ui.common import cached_bundle

    bundle = cached_bundle(str(bundle_path), domain="support")
    metrics = {k: v for k, v in bundle.metrics.items() if isinstance(v, (int, float))}
    cols = st.columns(4)
    for i, key in enumerate(("top1_accuracy", "mrr", "handoff_recall", "answered_precision")):
        if key in metrics:
            cols[i].metric(t[f"m_{key}"], f"{metrics[key]:.3f}")
    st.json(metrics, expanded=False)
    for name in ("plots/coverage_curve.png", "plots/confidence_calibration.png"):
        if bundle.has(name):
            st.image(str(bundle.file(name)), caption=name.split("/")[-1], width=480)


@st.cache_resource(show_spinner=False, max_entries=8)
def _open_review_store(url: str):
    from lepton_apps.store import Store

    return Store.open(url)


def review_tab(bot, bundle_path: Path | None, feedback, t: dict[str, str]) -> None:
    """The review queue: collect candidate paraphrases, accept / assign / reject each pending one (who and when
    are stored), and rebuild the model with the accepted ones into the next registered version. ``feedback``:
    the page's FeedbackStore, None when the database could not be opened (the error is shown once, above)."""
    from lepton_apps.registry import Registry
    from lepton_apps.store import configured_url
    from lepton_apps.support.review import apply_accepted, collect_candidates, reviewer

    st.write(t["review_intro"])
    if feedback is None:
        st.caption(t["review_off"])
        return
    url = configured_url()
    if url is None:
        st.info(t["review_no_db"])
        return
    if bot is None:
        st.info(t["review_no_model"])
        return
    store = _open_review_store(url)
    by = st.text_input(t["reviewer"], value=reviewer(), key="support_review_by")
    if st.button(t["collect"], key="support_review_collect", help=t["collect_help"]):
        with guarded(t["err_collect"]):
            counts = collect_candidates(store, bot)
            st.success(t["collected"].format(**counts))
    pending = store.candidates_frame("pending")
    st.caption(t["pending"].format(n=len(pending)))
    ids = bot.kb["id"].astype(str).tolist()
    for row in pending.head(50).itertuples(index=False):
        with st.container(border=True):
            st.text(row.question[:2000])
            st.caption(t["candidate"].format(reason=candidate_reason(row.reason, t), source=row.source,
                                             answered=row.answered_faq_id or t["answered_handoff"],
                                             proposed=row.proposed_faq_id or "-"))
            pick, accept, reject = st.columns([4, 1, 1])
            choice = pick.selectbox(t["faq"], ids, index=ids.index(row.proposed_faq_id) if row.proposed_faq_id in ids
                                    else None, key=f"support_review_faq_{row.id}", label_visibility="collapsed",
                                    placeholder=t["assign"])
            if accept.button(t["accept"], key=f"support_review_accept_{row.id}", disabled=choice is None):
                with guarded(t["err_decide"]):
                    store.decide_candidate(row.id, "accept" if choice == row.proposed_faq_id else "assign", by,
                                           faq_id=choice)
                    st.rerun()
            if reject.button(t["reject"], key=f"support_review_reject_{row.id}"):
                with guarded(t["err_decide"]):
                    store.decide_candidate(row.id, "reject", by)
                    st.rerun()
    accepted = store.candidates_frame("accepted")
    if len(accepted):
        st.subheader(t["accepted"].format(n=len(accepted)))
        st.dataframe(accepted[["id", "question", "proposed_faq_id", "faq_id", "decided_by", "decided_at"]],
                     hide_index=True)
        name = None
        if bundle_path is not None and Path(bundle_path).resolve().parent != Registry().home.resolve():
            name = st.text_input(t["rebuild_name"], key="support_review_name", help=t["rebuild_name_help"])
        if bundle_path is not None and st.button(t["rebuild_apply"].format(n=len(accepted)),
                                                 key="support_review_apply", type="primary"):
            with guarded(t["err_rebuild"]):
                bar = st.progress(0.0, text=t["starting"])
                applied = apply_accepted(bundle_path, store, name=(name or "").strip() or None,
                                         progress=lambda stage, frac: bar.progress(min(1.0, frac),
                                                                                   text=stage_text(stage, t)))
                st.success(t["applied"].format(name=applied.name))
                st.text(applied.summary())
    done = store.candidates_frame(["rejected", "applied"])
    if len(done):
        with st.expander(t["decided"].format(n=len(done))):
            st.dataframe(done[["id", "status", "question", "faq_id", "decided_by", "decided_at", "applied_version"]],
                         hide_index=True)


def _language_chosen() -> None:
    # on_change of the language switch: from now on the page keeps the user's language
    st.session_state[LANG_CHOSEN_KEY] = st.session_state[LANG_KEY]


def follow_bundle_language(bot, lang: str) -> None:
    """Until the user picks a language, switch the page to the loaded bundle's KB language: one rerun when it
    differs from ``lang``, the language this run was drawn in."""
    if bot is None or st.session_state.get(LANG_CHOSEN_KEY):
        return
    wanted = page_language(getattr(bot.settings, "kb_language", None))
    if lang != wanted:
        st.session_state[LANG_KEY] = wanted
        st.rerun()


def main() -> None:
    """Render the page."""
    lang = st.session_state.get(LANG_KEY) or st.session_state.get(LANG_CHOSEN_KEY) or "en"
    lang = lang if lang in TEXTS else "en"
    t = TEXTS[lang]
    switch = st.sidebar.container()   # filled last, at the top of the sidebar, once the bundle's language is known
    st.title(t["title"])
    st.caption(t["subtitle"])
    bundle_path = store = bot = None
    with guarded(t["err_feedback_db"]):
        store = feedback_store(t)
    with guarded(t["err_model"]):
        bundle_path = pick_bundle(t)
        backend = backend_picker("support_backend", t["backend"])
        if bundle_path is not None:
            bot = load_assistant(bundle_path, backend)
    follow_bundle_language(bot, lang)
    if LANG_KEY not in st.session_state:
        st.session_state[LANG_KEY] = lang
    switch.radio(t["language"], list(LANGUAGES), format_func=LANGUAGES.get, key=LANG_KEY, horizontal=True,
                 on_change=_language_chosen)
    chat, fb, kb, model, review = st.tabs([t["tab_chat"], t["tab_feedback"], t["tab_kb"], t["tab_model"],
                                           t["tab_review"]])
    with chat:
        if bot is not None:
            chat_tab(bot, store, t)
        else:
            st.caption(t["chat_no_model"])
    with fb:
        if store is not None:
            with guarded(t["err_feedback_read"]):
                feedback_tab(store, t)
    with kb:
        with guarded(t["err_kb"]):
            kb_tab(bundle_path, t)
    with model:
        if bundle_path is not None:
            with guarded(t["err_report"]):
                model_tab(bundle_path, t)
    with review:
        with guarded(t["err_review"]):
            review_tab(bot, bundle_path, store, t)


# Runs the same mounted by the hub and standalone; no st.set_page_config (the hub owns it).
main()
