"""Streamlit page of the support template: chat, feedback, knowledge-base rebuild, model report, and the
review queue of the support loop (candidate paraphrases accepted, reassigned or rejected, then applied).

Runs mounted by the hub (``lepton-apps ui``) or alone: ``streamlit run apps/support/page.py``.
Customer text is always shown with ``st.text`` (never interpreted as Markdown or HTML).
"""
from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from lepton_apps.ui.common import cached_predictor, guarded

CHAT_KEY = "support_chat"


def load_assistant(path: Path):
    """Return the SupportAssistant of the bundle at ``path`` from the hub's shared model cache."""
    return cached_predictor(path, "support")


def pick_bundle() -> Path | None:
    """Sidebar: choose a registered support bundle or type a path; return its folder or None."""
    from lepton_apps.registry import Registry

    reg = Registry()
    entries = reg.list("support")
    names = [e.name + (f"  ({', '.join(e.aliases)})" if e.aliases else "") for e in entries]
    choice = st.sidebar.selectbox("Support model", names, index=0 if names else None,
                                  placeholder="no support model registered")
    typed = st.sidebar.text_input("…or a bundle folder", value="", key="support_bundle_path")
    if typed.strip():
        return Path(typed.strip()).expanduser()
    if choice is None:
        st.info("No support model in the registry yet. Build the demo with `lepton-apps demo --domain support`, "
                "or train one with `lepton-apps support train FAQ.csv`.")
        return None
    return entries[names.index(choice)].path


def feedback_store():
    """Return the FeedbackStore on the service database ($LEPTON_DB_URL, else lepton.db in the registry folder),
    opened once per process, and name that database in the sidebar with its password hidden."""
    import os

    from lepton_apps.store import DB_ENV
    from lepton_apps.support.feedback import LEGACY_ENV

    store = _open_feedback(os.environ.get(DB_ENV), os.environ.get("LEPTON_HOME"), os.environ.get(LEGACY_ENV))
    st.sidebar.caption(f"Feedback database: `{store.location}`"
                       + ("" if store.opened else " (created with the first rating)"))
    return store


@st.cache_resource(show_spinner="Opening the feedback database…", max_entries=8)
def _open_feedback(db_url: str | None, home: str | None, legacy: str | None):
    # The arguments are the cache key: the settings that choose the database and the old feedback file.
    from lepton_apps.support.feedback import FeedbackStore

    return FeedbackStore()


THUMB_UP, THUMB_DOWN = ":material/thumb_up:", ":material/thumb_down:"


def render_reply(i: int, turn: dict, store) -> None:
    """Show one assistant reply: answer, matched FAQ + confidence, hand-off state, escalation badge, sources, feedback
    (thumbs buttons, or a note when ``store`` is None)."""
    r = turn["reply"]
    with st.chat_message("assistant"):
        if r["handoff"]:
            st.warning("Connecting you to a human agent…", icon=":material/support_agent:")
            st.caption(f"Hand-off reason: {r['handoff_reason']}")
        else:
            st.text(r["answer"])
            st.caption(f"Matched FAQ: {r['faq_id']} · confidence {r['confidence']:.2f}")
        tags = []
        if r.get("intent"):
            tags.append(f"intent: {r['intent']} → {r.get('team') or r['intent']}")
        if r.get("sentiment"):
            tags.append(f"sentiment: {r['sentiment']}")
        if tags:
            st.caption(" · ".join(tags))
        if r.get("escalate"):
            st.badge(f"Escalate: {r['escalation_reason']}", icon=":material/priority_high:", color="red")
        if r.get("truncated"):
            st.caption("The message was very long and was shortened before searching.")
        if r["sources"]:
            with st.expander(f"Sources ({len(r['sources'])})"):
                import pandas as pd

                st.dataframe(pd.DataFrame(r["sources"])[["faq_id", "score", "dense", "lexical", "matched_text", "question"]],
                             hide_index=True)
        rated = turn.get("rated")
        if store is None:
            st.caption("Rating is off: the feedback database could not be opened (see the error above).")
        elif rated:
            # Material icons, not emoji: browsers without an emoji font (Debian Chromium) draw emoji as empty boxes
            st.caption("Thanks for the feedback " + (THUMB_UP if rated > 0 else THUMB_DOWN))
        else:
            up, down, _ = st.columns([1, 1, 8])
            for col, value, label, tip in ((up, 1, THUMB_UP, "Helpful answer"), (down, -1, THUMB_DOWN, "Not helpful")):
                if col.button(label, key=f"support_fb_{i}_{value}", help=tip):
                    with guarded("Could not store the feedback"):
                        store.add(turn["question"], r["answer"], r["faq_id"], value, r["model_version"],
                                  confidence=r["confidence"], handoff=r["handoff"])
                        turn["rated"] = value
                        st.rerun()


def chat_tab(bot, store) -> None:
    """The chat: history, the input box, and a reply per question."""
    history = st.session_state.setdefault(CHAT_KEY, [])
    question = st.chat_input("Ask a question, e.g. 'my card was stolen'")
    if question is not None:
        with guarded("Could not answer"):
            reply = bot.answer(question)
            history.append({"question": reply.question or question, "reply": reply.to_dict(), "rated": 0})
    for i, turn in enumerate(history):
        with st.chat_message("user"):
            st.text(turn["question"][:2000])
        render_reply(i, turn, store)
    if history and st.button("Clear the conversation", key="support_clear"):
        st.session_state[CHAT_KEY] = []
        st.rerun()


def feedback_tab(store) -> None:
    """Stored ratings with a CSV download (fine-tuning data)."""
    df = store.frame()
    st.caption(f"{len(df)} rating(s) in `{store.location}`")
    if store.imported:
        st.info(f"{store.imported} rating(s) were imported from the old feedback file `{store.legacy_path}`.",
                icon=":material/move_up:")
    if len(df):
        st.metric("Thumbs up", f"{(df['rating'] > 0).mean():.0%}")
        st.dataframe(df, hide_index=True)
    st.download_button("Download feedback as CSV", store.to_csv(), file_name="support_feedback.csv",
                       mime="text/csv", key="support_fb_csv")


def kb_tab(bundle_path: Path | None) -> None:
    """Upload a KB file, validate it, and rebuild the index into a new registered bundle with a progress bar."""
    from lepton_apps.support.data import read_kb

    st.write("Upload a knowledge base (CSV, JSON or JSONL with `id, question, answer`, optional `paraphrases`, "
             "`category`, `url`). It is validated first; rebuilding encodes it and registers a new model.")
    upload = st.file_uploader("Knowledge base file", type=["csv", "json", "jsonl"], key="support_kb_upload")
    if upload is None:
        return
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="lepton-support-kb-"))
    path = folder / Path(upload.name).name
    path.write_bytes(upload.getvalue())
    kb = None
    with guarded("The knowledge base is not valid"):
        kb = read_kb(path)
    if kb is None:
        return
    st.success(f"Valid: {len(kb)} entries, {int(kb['paraphrases'].map(len).sum())} paraphrases.")
    st.dataframe(kb[["id", "question", "category"]].head(50), hide_index=True)
    if st.button("Rebuild the index", key="support_rebuild", type="primary"):
        with guarded("Rebuilding failed"):
            from lepton_apps.registry import Registry
            from lepton_apps.support.config import SupportConfig
            from lepton_apps.support.training import train

            encoder = "all-MiniLM-L6-v2"
            if bundle_path is not None:
                encoder = load_assistant(bundle_path).encoder.name
            bar = st.progress(0.0, text="starting")
            out = folder / "bundle"
            train(SupportConfig(kb=str(path), out=str(out), encoder=encoder, progress=False),
                  progress=lambda stage, frac: bar.progress(min(1.0, frac), text=stage))
            name = f"support-kb-{time.strftime('%Y%m%d-%H%M%S')}"
            Registry().register(out, name)
            st.success(f"Registered {name}; pick it in the sidebar.")


def model_tab(bundle_path: Path) -> None:
    """Bundle metrics and the evaluation plots saved in it."""
    from lepton_apps.ui.common import cached_bundle

    bundle = cached_bundle(str(bundle_path), domain="support")
    metrics = {k: v for k, v in bundle.metrics.items() if isinstance(v, (int, float))}
    cols = st.columns(4)
    for i, key in enumerate(("top1_accuracy", "mrr", "handoff_recall", "answered_precision")):
        if key in metrics:
            cols[i].metric(key.replace("_", " "), f"{metrics[key]:.3f}")
    st.json(metrics, expanded=False)
    for name in ("plots/coverage_curve.png", "plots/confidence_calibration.png"):
        if bundle.has(name):
            st.image(str(bundle.file(name)), caption=name.split("/")[-1], width=480)


@st.cache_resource(show_spinner="Opening the service database…", max_entries=8)
def _open_review_store(url: str):
    from lepton_apps.store import Store

    return Store.open(url)


def review_tab(bot, bundle_path: Path | None, feedback) -> None:
    """The review queue: collect candidate paraphrases, accept / assign / reject each pending one (who and when
    are stored), and rebuild the model with the accepted ones into the next registered version. ``feedback``:
    the page's FeedbackStore, None when the database could not be opened (the error is shown once, above)."""
    from lepton_apps.registry import Registry
    from lepton_apps.store import configured_url
    from lepton_apps.support.review import apply_accepted, collect_candidates, reviewer

    st.write("Questions the assistant missed — rated down, or resolved by an agent with an existing FAQ — become "
             "candidate paraphrases. Accepted ones are added to their FAQ and rebuild the model (index, "
             "classifier and hand-off calibration) as the next version in the registry.")
    if feedback is None:
        st.caption("Review is off: the service database could not be opened (see the error above).")
        return
    url = configured_url()
    if url is None:
        st.info("No service database yet: it is created with the first rating or by `lepton-apps serve`.")
        return
    if bot is None:
        st.info("Pick a support model in the sidebar: candidates are proposed for its knowledge base.")
        return
    store = _open_review_store(url)
    by = st.text_input("Reviewer", value=reviewer(), key="support_review_by")
    if st.button("Collect candidates", key="support_review_collect", help="From thumbs-down ratings and outcomes"):
        with guarded("Could not collect candidates"):
            counts = collect_candidates(store, bot)
            st.success(f"{counts['added']} new candidate(s); skipped: {counts['known_source']} collected before, "
                       f"{counts['in_kb']} already in the KB, {counts['duplicate']} duplicates, "
                       f"{counts['answered_right']} answered right, {counts['out_of_scope']} out of scope, "
                       f"{counts['no_question']} without question text.")
    pending = store.candidates_frame("pending")
    st.caption(f"{len(pending)} pending candidate(s)")
    ids = bot.kb["id"].astype(str).tolist()
    for row in pending.head(50).itertuples(index=False):
        with st.container(border=True):
            st.text(row.question[:2000])
            answered = row.answered_faq_id or "hand-off"
            st.caption(f"{row.reason} · {row.source} · answered: {answered} · proposed: {row.proposed_faq_id or '-'}")
            pick, accept, reject = st.columns([4, 1, 1])
            choice = pick.selectbox("FAQ", ids, index=ids.index(row.proposed_faq_id) if row.proposed_faq_id in ids
                                    else None, key=f"support_review_faq_{row.id}", label_visibility="collapsed",
                                    placeholder="assign to a FAQ")
            if accept.button("Accept", key=f"support_review_accept_{row.id}", disabled=choice is None):
                with guarded("Could not store the decision"):
                    store.decide_candidate(row.id, "accept" if choice == row.proposed_faq_id else "assign", by,
                                           faq_id=choice)
                    st.rerun()
            if reject.button("Reject", key=f"support_review_reject_{row.id}"):
                with guarded("Could not store the decision"):
                    store.decide_candidate(row.id, "reject", by)
                    st.rerun()
    accepted = store.candidates_frame("accepted")
    if len(accepted):
        st.subheader(f"{len(accepted)} accepted")
        st.dataframe(accepted[["id", "question", "proposed_faq_id", "faq_id", "decided_by", "decided_at"]],
                     hide_index=True)
        name = None
        if bundle_path is not None and Path(bundle_path).resolve().parent != Registry().home.resolve():
            name = st.text_input("Registry name for the rebuilt model", key="support_review_name",
                                 help="The model is a folder outside the registry: the new version is NAME.v2, …")
        if bundle_path is not None and st.button(f"Rebuild the model with {len(accepted)} accepted paraphrase(s)",
                                                 key="support_review_apply", type="primary"):
            with guarded("Rebuilding failed"):
                bar = st.progress(0.0, text="starting")
                applied = apply_accepted(bundle_path, store, name=(name or "").strip() or None,
                                         progress=lambda stage, frac: bar.progress(min(1.0, frac), text=stage))
                st.success(f"Registered {applied.name}; pick it in the sidebar, compare it live with "
                           f"`lepton-apps monitor live support`, promote it with `lepton-apps models promote "
                           f"{applied.name}`.")
                st.text(applied.summary())
    done = store.candidates_frame(["rejected", "applied"])
    if len(done):
        with st.expander(f"Decided ({len(done)})"):
            st.dataframe(done[["id", "status", "question", "faq_id", "decided_by", "decided_at", "applied_version"]],
                         hide_index=True)


def main() -> None:
    """Render the page."""
    st.title("Support assistant")
    st.caption("Answers from your FAQ with sources and a calibrated confidence; hands off to a human when unsure.")
    bundle_path = store = bot = None
    with guarded("Could not open the feedback database"):
        store = feedback_store()
    with guarded("Could not load the model"):
        bundle_path = pick_bundle()
        if bundle_path is not None:
            bot = load_assistant(bundle_path)
    chat, fb, kb, model, review = st.tabs(["Chat", "Feedback", "Knowledge base", "Model", "Review"])
    with chat:
        if bot is not None:
            chat_tab(bot, store)
    with fb:
        if store is not None:
            with guarded("Could not read the feedback"):
                feedback_tab(store)
    with kb:
        with guarded("Knowledge base"):
            kb_tab(bundle_path)
    with model:
        if bundle_path is not None:
            with guarded("Could not show the model report"):
                model_tab(bundle_path)
    with review:
        with guarded("Could not show the review queue"):
            review_tab(bot, bundle_path, store)


# Runs the same mounted by the hub and standalone; no st.set_page_config (the hub owns it).
main()
