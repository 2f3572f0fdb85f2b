"""The support loop: questions the assistant missed become reviewed paraphrases that rebuild its index.

1. :func:`collect_candidates` turns thumbs-down ratings and the answers an agent resolved with an existing FAQ
   (an outcome whose label is a KB FAQ id, ``lepton-apps monitor labels``) into candidate paraphrases in the
   service database's ``candidates`` table, each ``pending``;
2. a reviewer accepts each one, assigns it to another FAQ, or rejects it (the page's Review tab, or
   ``lepton-apps support review accept|assign|reject``), with who and when;
3. :func:`apply_accepted` adds the accepted questions to their FAQs' paraphrases, rebuilds the bundle with the
   same settings (index, FAQ classifier, fusion weights, confidence model and hand-off threshold are all fitted
   again), registers it as the next version of the same registry name and marks the candidates applied.

::

    from lepton_apps.support.review import apply_accepted, collect_candidates

    collect_candidates(store, assistant)                # {"added": 3, "known_source": 0, "in_kb": 1, ...}
    store.decide_candidate(1, "accept", by="maria")
    applied = apply_accepted("support-demo", store)      # -> the new bundle (os.PathLike), before / after
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from lepton_apps.errors import ConfigError, DataError

from .data import kb_texts, read_questions

DOMAIN = "support"
VERSION_RE = re.compile(r"^(?P<base>.+)\.v(?P<n>\d+)$")


def normalise(text: Any) -> str:
    """Return ``text`` case-folded with its whitespace collapsed (how questions are compared)."""
    return " ".join(str(text or "").casefold().split())


def _text(value: Any) -> str | None:
    """Return ``value`` as stripped text, or None for None / NaN / empty."""
    if value is None or (isinstance(value, float) and value != value) or str(value).strip() == "":
        return None
    return str(value).strip()


def reviewer() -> str:
    """Return the operating-system user's name (the default reviewer), or "unknown"."""
    import getpass

    try:
        return getpass.getuser() or "unknown"
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "unknown"


# --------------------------------------------------------------------------- 1. collect

def _served(store) -> dict[tuple[str, int], dict]:
    """Return the served support answers by (request_id, item): question (with --audit-free-text), faq_id,
    handoff, model_version."""
    from lepton_apps.monitor.live import served_items

    items = served_items(store.audit_frame(domain=DOMAIN))
    out = {}
    for row in items.to_dict(orient="records"):
        out[(str(row["request_id"]), int(row["item"]))] = row
    return out


def _proposals(assistant, questions: list[str], avoid: list[str | None]) -> list[str | None]:
    """Return the proposed FAQ id per question: the assistant's best-ranked source that is not the FAQ the
    customer rated down (``avoid``), or None when it finds no source (e.g. a message without words)."""
    if not questions:
        return []
    out = []
    for reply, bad in zip(assistant.answer_batch(questions), avoid):
        ranked = [s.faq_id for s in reply.sources if s.faq_id != bad]
        out.append(ranked[0] if ranked else None)
    return out


def collect_candidates(store, assistant) -> dict[str, int]:
    """Add the candidate paraphrases found in ``store`` (a :class:`lepton_apps.store.Store`) for the KB of
    ``assistant``; return counts: ``added``, ``known_source`` (collected before: each source is taken once),
    ``in_kb`` (the question is a KB text already), ``duplicate`` (the same question for the same FAQ is a
    candidate already, in any status), ``answered_right`` (the outcome's FAQ is the one the assistant answered
    with), ``out_of_scope`` (the agent's label is no KB FAQ), ``no_question`` (the question text is not known:
    no rating and no --audit-free-text audit row for the request).

    Sources, in this order: outcomes of ``support`` whose label is a KB FAQ id, joined by request_id (+ item)
    to the served answer (audit row) and to the question text (the rating's, else the audit row's); then
    thumbs-down ratings, whose proposed FAQ is the agent's label for the same request when there is one, else
    the assistant's best-ranked FAQ other than the one rated down.
    """
    kb_ids = set(assistant.kb["id"].astype(str))
    kb_known = {normalise(t) for t in kb_texts(assistant.kb)[0]}
    existing = store.candidates_frame(domain=DOMAIN)
    known_sources = set(existing["source"])
    pairs = {(normalise(q), f) for q, f in zip(existing["question"], existing["faq_id"].fillna(""))}
    counts = dict.fromkeys(("added", "known_source", "in_kb", "duplicate", "answered_right", "out_of_scope",
                            "no_question"), 0)
    feedback = store.feedback_frame()
    outcomes = store.outcomes_frame(domain=DOMAIN)
    served = _served(store)
    asked = {}   # request_id -> the latest rating's question (ratings from the service carry request_id)
    for row in feedback.dropna(subset=["request_id"]).itertuples(index=False):
        asked[str(row.request_id)] = row
    resolved: dict[str, str] = {}   # request_id -> the agent's label (the latest outcome wins)
    rows: list[dict] = []

    def keep(question: str, faq_id: str | None, source: str, **extra) -> None:
        question = _text(question) or ""
        if source in known_sources:
            counts["known_source"] += 1
        elif not question:
            counts["no_question"] += 1
        elif normalise(question) in kb_known:
            counts["in_kb"] += 1
        elif (normalise(question), faq_id or "") in pairs:
            counts["duplicate"] += 1
        else:
            pairs.add((normalise(question), faq_id or ""))
            rows.append({"question": question, "proposed_faq_id": faq_id, "source": source, **extra})

    for o in outcomes.itertuples(index=False):
        label = str(o.label).strip()
        if not isinstance(o.request_id, str) or not o.request_id:
            continue
        resolved[o.request_id] = label
        if label not in kb_ids:   # out_of_scope, or a FAQ this KB does not have: nothing to add to it
            counts["out_of_scope"] += 1
            continue
        item = 0 if o.item is None or pd.isna(o.item) else int(o.item)
        answer = served.get((o.request_id, item), {})
        rating = asked.get(o.request_id) if item == 0 else None
        question = _text(rating.question if rating is not None else None) or _text(answer.get("question"))
        served_handoff = answer.get("handoff")
        if served_handoff is None or (isinstance(served_handoff, float) and served_handoff != served_handoff):
            served_handoff = rating.handoff if rating is not None else True
        handoff = bool(served_handoff)
        answered = _text(answer.get("faq_id")) if answer else _text(rating.faq_id if rating is not None else None)
        if not handoff and answered == label:
            counts["answered_right"] += 1
            continue
        if not question:
            counts["no_question"] += 1
            continue
        keep(question, label, f"outcome:{o.id}", reason="handoff-resolved" if handoff else "wrong-answer-resolved",
             answered_faq_id=None if handoff else answered,
             model_version=_text(answer.get("model_version")) or (rating.model_version if rating is not None else None))

    down = feedback[feedback["rating"] == -1]
    to_propose = []
    for row in down.itertuples(index=False):
        label = resolved.get(row.request_id) if isinstance(row.request_id, str) else None
        if label is not None and label not in kb_ids:
            counts["out_of_scope"] += 1
            continue
        extra = {"reason": "thumbs-down", "answered_faq_id": None if row.handoff else _text(row.faq_id),
                 "model_version": row.model_version}
        if label is not None:
            keep(row.question, label, f"feedback:{row.id}", **{**extra, "reason": "thumbs-down-resolved"})
        elif f"feedback:{row.id}" in known_sources:
            counts["known_source"] += 1
        else:
            to_propose.append((row, extra))
    proposals = _proposals(assistant, [str(r.question) for r, _ in to_propose],
                           [None if r.handoff else _text(r.faq_id) for r, _ in to_propose])
    for (row, extra), proposed in zip(to_propose, proposals):
        keep(row.question, proposed, f"feedback:{row.id}", **extra)
    counts["added"] = store.add_candidates(rows, domain=DOMAIN)
    counts["known_source"] += len(rows) - counts["added"]   # added meanwhile by another process
    return counts


# --------------------------------------------------------------------------- 3. apply

@dataclasses.dataclass
class AppliedReview:
    """What :func:`apply_accepted` did; ``os.fspath()`` of it is the new bundle's path.

    ``before`` / ``after``: the old and the new bundle measured by ``SupportAssistant.evaluate`` on the bundle's
    own held-out (split=test) questions, plus ``accepted_answered``: the share of the accepted questions each
    bundle answers (no hand-off) with the accepted FAQ."""

    path: Path
    name: str
    model_version: str
    previous_version: str
    candidates: list[int]
    paraphrases_added: int
    before: dict[str, float]
    after: dict[str, float]

    def __fspath__(self) -> str:
        return str(self.path)

    def summary(self) -> str:
        """Return the before / after lines shown by the CLI and the page."""
        lines = [f"registered {self.name} ({self.model_version}): {self.paraphrases_added} paraphrase(s) added from "
                 f"{len(self.candidates)} accepted candidate(s)"]
        for key, what in (("answered_correct", "answered-correct on the held-out questions"),
                          ("handoff_recall", "hand-off recall on the held-out questions"),
                          ("accepted_answered", "accepted questions answered with their FAQ")):
            if key in self.before or key in self.after:
                b, a = self.before.get(key, float("nan")), self.after.get(key, float("nan"))
                lines.append(f"  {what}: {b:.3f} -> {a:.3f} ({a - b:+.3f})")
        return "\n".join(lines)


def next_version_name(registry, base: str) -> str:
    """Return the next free ``<base>.v<N>`` name (N from 2) for a rebuild of the registry model ``base``."""
    taken = {e.name for e in registry.list()}
    n = 2
    for name in taken:
        m = VERSION_RE.match(name)
        if m and m.group("base") == base:
            n = max(n, int(m.group("n")) + 1)
    while f"{base}.v{n}" in taken:
        n += 1
    return f"{base}.v{n}"


def held_out_questions(questions: str | Path | None, kb_ids: set[str]) -> pd.DataFrame | None:
    """Return the split=test questions a bundle was evaluated on (the same choice as ``training.build``: every
    second question when none is marked), or None without a questions file."""
    if not questions:
        return None
    q = read_questions(questions, kb_ids=kb_ids)
    if not (q["split"] != "").any():
        return q.iloc[1::2].reset_index(drop=True)
    return q[q["split"] == "test"].reset_index(drop=True)


def _measure(assistant, test: pd.DataFrame | None, accepted: pd.DataFrame) -> dict[str, float]:
    out: dict[str, float] = {}
    if test is not None and len(test):
        m = assistant.evaluate(test).metrics
        out.update({k: float(m[k]) for k in ("answered_correct", "handoff_recall", "top1_accuracy") if k in m})
    replies = assistant.answer_batch(accepted["question"].tolist())
    right = [not r.handoff and r.faq_id == f for r, f in zip(replies, accepted["faq_id"])]
    out["accepted_answered"] = float(sum(right) / len(right)) if right else float("nan")
    return out


def _config(bundle, overrides: dict[str, Any]):
    """Return the bundle's SupportConfig with ``overrides``; ConfigError naming a data file that is gone."""
    from .config import SupportConfig

    cfg = SupportConfig.from_dict({**bundle.training_config, **{k: v for k, v in overrides.items() if v is not None}})
    flags = {"questions": "--questions", "sentiment_data": "--sentiment-data", "intent_data": "--intent-data"}
    for key, flag in flags.items():
        value = getattr(cfg, key)
        if value and not Path(value).is_file():
            raise ConfigError(f"the bundle was trained with {key}={value}, which no longer exists", where=str(bundle.path),
                              fix=f"pass the file again ({flag} on the CLI, {key}=... in Python) so that the "
                                  "rebuild uses the same data")
    return cfg


def apply_accepted(bundle_ref: str | os.PathLike, store, *, name: str | None = None, home: str | os.PathLike | None = None,
                   questions: str | None = None, sentiment_data: str | None = None, intent_data: str | None = None,
                   progress: Callable[[str, float], None] | None = None) -> AppliedReview:
    """Rebuild the bundle ``bundle_ref`` (a registry name, ``support:latest`` or a folder) with the accepted
    candidates in ``store`` added to their FAQs' paraphrases and the same settings; register it as the next
    version ``<name>.v<N>`` of the same registry name (``name`` is required for a folder outside the registry),
    mark the candidates applied with the new model_version and return the :class:`AppliedReview` (os.PathLike:
    the new bundle path). The data files of the original training must still exist, or be passed again.

    Raises ConfigError when nothing is accepted, DataError when an accepted FAQ id is not in the bundle's KB."""
    from lepton_apps.bundle import load_bundle
    from lepton_apps.registry import Registry

    from .predict import SupportAssistant
    from .training import build, write_bundle

    say = progress or (lambda stage, frac: None)
    registry = Registry(home)
    path = registry.resolve(str(bundle_ref), domain=DOMAIN)
    bundle = load_bundle(path, domain=DOMAIN)
    in_registry = path.resolve().parent == registry.home.resolve()
    if name is None and not in_registry:
        raise ConfigError(f"{path} is not in the registry {registry.home}, so the new version has no name to follow",
                          where="apply_accepted", fix="pass name='my-support-model' (--name on the CLI)")
    base = name or path.name
    m = VERSION_RE.match(base)
    base = m.group("base") if m else base
    accepted = store.candidates_frame(status="accepted", domain=DOMAIN)
    if accepted.empty:
        raise ConfigError("no accepted candidates to apply", where="candidates",
                          fix="collect and review them first: the Review tab of the support page, or "
                              "'lepton-apps support review collect MODEL' then 'review accept ID'")
    kb = pd.DataFrame(bundle.load_json("kb.json"))
    row_of = {fid: i for i, fid in enumerate(kb["id"].astype(str))}
    unknown = sorted(set(accepted["faq_id"].astype(str)) - set(row_of))
    if unknown:
        raise DataError(f"accepted candidates name FAQ ids that the bundle's KB lacks: {', '.join(unknown[:10])}",
                        where=str(path), fix="assign those candidates to FAQ ids of this KB, or reject them")
    kb["paraphrases"] = kb["paraphrases"].map(list)
    known = {normalise(t) for t in kb_texts(kb)[0]}
    added = 0
    for question, fid in zip(accepted["question"], accepted["faq_id"]):
        if normalise(question) not in known:
            kb.at[row_of[str(fid)], "paraphrases"].append(str(question).strip())
            known.add(normalise(question))
            added += 1
    cfg = _config(bundle, {"questions": questions, "sentiment_data": sentiment_data, "intent_data": intent_data})
    with tempfile.TemporaryDirectory(prefix="lepton-support-review-") as tmp:
        kb_file = Path(tmp) / "kb.json"
        kb_file.write_text(json.dumps({"records": kb.to_dict(orient="records")}, ensure_ascii=False), encoding="utf-8")
        cfg = cfg.model_copy(update={"kb": str(kb_file), "out": str(Path(tmp) / "bundle"), "progress": False})
        assistant, record = build(cfg, progress=lambda stage, frac: say(stage, 0.8 * frac))
        say("writing the bundle", 0.8)
        write_bundle(assistant, record, cfg.out)
        new_name = next_version_name(registry, base)
        entry = registry.register(cfg.out, new_name, move=True)
    say("measuring the old and the new bundle", 0.85)
    test = held_out_questions(cfg.questions, set(row_of))
    old, new = SupportAssistant.load(path), SupportAssistant.load(entry.path)
    before, after = _measure(old, test, accepted), _measure(new, test, accepted)
    ids = [int(i) for i in accepted["id"]]
    store.mark_candidates_applied(ids, new.model_version)
    say("done", 1.0)
    return AppliedReview(path=entry.path, name=new_name, model_version=new.model_version,
                         previous_version=old.model_version, candidates=ids, paraphrases_added=added,
                         before=before, after=after)
