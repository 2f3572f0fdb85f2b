"""The fixed texts of the support page in English and Chinese (Simplified), looked up by key.

Answers and hand-off messages come from the bundle (already in the customer's language) and are never
translated here; these are only the page's own words: titles, tabs, buttons, captions, empty states, the
context line of errors, and the reasons of a hand-off or an escalation — worded here from the reply's
``handoff_code`` / ``handoff_detail`` and ``escalation_detail`` (apps/support/predict.py), since the reply's own
``handoff_reason`` and ``escalation_reason`` are English. ``str.format`` fields ({n}, {faq_id}, …) are filled by
the page.
"""
from __future__ import annotations

LANGUAGES = {"en": "English", "zh": "中文"}   # the sidebar switch: code -> the name shown

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        # page and sidebar
        "language": "Language / 语言",
        "title": "Support assistant",
        "subtitle": "Answers from your FAQ with sources and a calibrated confidence; hands off to a human when unsure.",
        "model_select": "Support model",
        "backend": "Backend",
        "encoded_by": "questions encoded by",
        "model_none": "no support model registered",
        "bundle_path": "…or a bundle folder",
        "no_model": "No support model in the registry yet. Build the demo with `lepton-apps demo --domain support`, "
                    "or train one with `lepton-apps support train FAQ.csv`.",
        "opening_feedback": "Opening the feedback database…",
        "feedback_db": "Feedback database: `{location}`",
        "feedback_db_new": " (created with the first rating)",
        "tab_chat": "Chat", "tab_feedback": "Feedback", "tab_kb": "Knowledge base", "tab_model": "Model",
        "tab_review": "Review",
        "err_feedback_db": "Could not open the feedback database",
        "err_model": "Could not load the model",
        "err_feedback_read": "Could not read the feedback",
        "err_kb": "Knowledge base",
        "err_report": "Could not show the model report",
        "err_review": "Could not show the review queue",
        # chat
        "chat_placeholder": "Ask a question, e.g. 'my card was stolen'",
        "chat_no_model": "Pick a support model in the sidebar to start the chat.",
        "chat_empty": "No messages yet: ask your first question below.",
        "err_answer": "Could not answer",
        "handoff": "Connecting you to a human agent…",
        "handoff_reason": "Hand-off reason: {reason}",
        "matched": "Matched FAQ: {faq_id} · confidence {confidence:.2f}",
        "intent": "intent: {intent} → {team}",
        "sentiment": "sentiment: {sentiment}",
        "detected_language": "language: {name}",
        "escalate": "Escalate: {reason}",
        # hand-off reasons, one per Answer.handoff_code (predict.HANDOFF_CODES), filled from Answer.handoff_detail;
        # worded as the reply's own English handoff_reason
        "reason_empty_question": "empty question",
        "reason_binary_data": "the message is not readable text (binary data)",
        "reason_unreadable_text": "the message is not readable text (binary data or unknown encoding)",
        "reason_no_words": "the message holds no words to search for",
        "reason_empty_kb": "the knowledge base is empty",
        "reason_low_confidence": "low confidence ({confidence:.2f} < {threshold:.2f}): probably not covered by the "
                                 "knowledge base",
        "reason_ambiguous": "ambiguous: '{first}' and '{second}' match almost equally "
                            "({first_score:.3f} vs {second_score:.3f})",
        # the escalation badge, filled from Answer.escalation_detail (as the reply's English escalation_reason);
        # {sentiment} is a sent_* name below
        "escalation_reason": "the customer seems {sentiment} (P(escalate)={p_escalate:.2f} >= {threshold:.2f})",
        "sent_neutral": "neutral", "sent_negative": "negative", "sent_urgent": "urgent",
        "truncated": "The message was very long and was shortened before searching.",
        "sources": "Sources ({n})",
        "col_faq_id": "faq_id", "col_score": "score", "col_rerank": "re-ranker", "col_dense": "dense", "col_lexical": "lexical",
        "col_matched_text": "matched_text", "col_question": "question",
        "rating_off": "Rating is off: the feedback database could not be opened (see the error above).",
        "thanks": "Thanks for the feedback ",
        "helpful": "Helpful answer",
        "not_helpful": "Not helpful",
        "err_rating": "Could not store the feedback",
        "clear": "Clear the conversation",
        # names of detected languages (apps/support/text.py detect_language)
        "lang_en": "English", "lang_zh": "Chinese", "lang_ja": "Japanese", "lang_ko": "Korean",
        "lang_ru": "Russian", "lang_el": "Greek", "lang_ar": "Arabic", "lang_he": "Hebrew", "lang_th": "Thai",
        "lang_hi": "Hindi", "lang_und": "unknown",
        # feedback tab
        "fb_count": "{n} rating(s) in `{location}`",
        "fb_imported": "{n} rating(s) were imported from the old feedback file `{path}`.",
        "fb_thumbs_up": "Thumbs up",
        "fb_download": "Download feedback as CSV",
        # knowledge-base tab
        "kb_intro": "Upload a knowledge base (CSV, JSON or JSONL with `id, question, answer`, optional `paraphrases`, "
                    "`category`, `url`). It is validated first; rebuilding encodes it and registers a new model.",
        "kb_file": "Knowledge base file",
        "err_kb_invalid": "The knowledge base is not valid",
        "kb_valid": "Valid: {n} entries, {p} paraphrases.",
        "kb_rebuild": "Rebuild the index",
        "err_rebuild": "Rebuilding failed",
        "starting": "starting",
        "kb_registered": "Registered {name}; pick it in the sidebar.",
        # rebuild stages (training.build / train, review.apply_accepted), shown on the progress bar
        "stage_reading the knowledge base": "reading the knowledge base",
        "stage_loading the encoder": "loading the encoder",
        "stage_fine-tuning the bi-encoder": "fine-tuning the bi-encoder",
        "stage_encoding the knowledge base": "encoding the knowledge base",
        "stage_calibrating retrieval and hand-off": "calibrating retrieval and hand-off",
        "stage_training the re-ranker (second stage)": "training the re-ranker (second stage)",
        "stage_training the intent classifier": "training the intent classifier",
        "stage_training the sentiment / urgency classifier": "training the sentiment / urgency classifier",
        "stage_evaluating on the held-out questions": "evaluating on the held-out questions",
        "stage_profiling the held-out questions for monitoring": "profiling the held-out questions for monitoring",
        "stage_writing the bundle": "writing the bundle",
        "stage_measuring the old and the new bundle": "measuring the old and the new bundle",
        "stage_done": "done",
        # model tab
        "m_top1_accuracy": "top1 accuracy", "m_mrr": "mrr", "m_handoff_recall": "handoff recall",
        "m_answered_precision": "answered precision",
        # review tab
        "review_intro": "Questions the assistant missed — rated down, or resolved by an agent with an existing "
                        "FAQ — become candidate paraphrases. Accepted ones are added to their FAQ and rebuild the model "
                        "(index, classifier and hand-off calibration) as the next version in the registry.",
        "review_off": "Review is off: the service database could not be opened (see the error above).",
        "review_no_db": "No service database yet: it is created with the first rating or by `lepton-apps serve`.",
        "review_no_model": "Pick a support model in the sidebar: candidates are proposed for its knowledge base.",
        "reviewer": "Reviewer",
        "collect": "Collect candidates",
        "collect_help": "From thumbs-down ratings and outcomes",
        "err_collect": "Could not collect candidates",
        "collected": "{added} new candidate(s); skipped: {known_source} collected before, {in_kb} already in the KB, "
                     "{duplicate} duplicates, {answered_right} answered right, {out_of_scope} out of scope, "
                     "{no_question} without question text.",
        "pending": "{n} pending candidate(s)",
        "candidate": "{reason} · {source} · answered: {answered} · proposed: {proposed}",
        # why a question became a candidate (apps/support/review.py collect_candidates)
        "cand_thumbs-down": "rated down", "cand_thumbs-down-resolved": "rated down, resolved by an agent",
        "cand_handoff-resolved": "handed off, resolved by an agent",
        "cand_wrong-answer-resolved": "wrong answer, resolved by an agent",
        "answered_handoff": "hand-off",
        "faq": "FAQ",
        "assign": "assign to a FAQ",
        "accept": "Accept",
        "reject": "Reject",
        "err_decide": "Could not store the decision",
        "accepted": "{n} accepted",
        "rebuild_name": "Registry name for the rebuilt model",
        "rebuild_name_help": "The model is a folder outside the registry: the new version is NAME.v2, …",
        "rebuild_apply": "Rebuild the model with {n} accepted paraphrase(s)",
        "applied": "Registered {name}; pick it in the sidebar, compare it live with `lepton-apps monitor live support`, "
                   "promote it with `lepton-apps models promote {name}`.",
        "decided": "Decided ({n})",
    },
    "zh": {
        "language": "语言 / Language",
        "title": "智能客服",
        "subtitle": "根据您的常见问题库作答，附上来源和校准后的置信度；没有把握时转接人工客服。",
        "model_select": "客服模型",
        "backend": "推理后端",
        "encoded_by": "问题编码后端：",
        "model_none": "尚未注册客服模型",
        "bundle_path": "…或输入模型文件夹路径",
        "no_model": "模型库中还没有客服模型。请用 `lepton-apps demo --domain support` 生成演示模型，"
                    "或用 `lepton-apps support train FAQ.csv` 训练一个。",
        "opening_feedback": "正在打开反馈数据库…",
        "feedback_db": "反馈数据库：`{location}`",
        "feedback_db_new": "（首次评价时创建）",
        "tab_chat": "对话", "tab_feedback": "反馈", "tab_kb": "知识库", "tab_model": "模型", "tab_review": "审核",
        "err_feedback_db": "无法打开反馈数据库",
        "err_model": "无法加载模型",
        "err_feedback_read": "无法读取反馈",
        "err_kb": "知识库",
        "err_report": "无法显示模型报告",
        "err_review": "无法显示审核队列",
        "chat_placeholder": "请输入您的问题，例如「我的银行卡丢了怎么办」",
        "chat_no_model": "请先在侧边栏选择一个客服模型，再开始对话。",
        "chat_empty": "还没有消息：请在下方输入您的第一个问题。",
        "err_answer": "无法回答",
        "handoff": "正在为您转接人工客服…",
        "handoff_reason": "转人工原因：{reason}",
        "matched": "匹配的问题：{faq_id} · 置信度 {confidence:.2f}",
        "intent": "意图：{intent} → {team}",
        "sentiment": "情绪：{sentiment}",
        "detected_language": "语言：{name}",
        "escalate": "需升级处理：{reason}",
        "reason_empty_question": "消息为空",
        "reason_binary_data": "消息是二进制数据，不是文字",
        "reason_unreadable_text": "消息无法识别为文字（可能是二进制数据或未知编码）",
        "reason_no_words": "消息中没有可供检索的文字（例如只有表情或标点）",
        "reason_empty_kb": "知识库是空的",
        "reason_low_confidence": "置信度较低（{confidence:.2f} < {threshold:.2f}）：知识库可能没有覆盖这个问题",
        "reason_ambiguous": "问题有歧义：「{first}」和「{second}」的匹配程度几乎相同（{first_score:.3f} 对 "
                            "{second_score:.3f}）",
        "escalation_reason": "客户似乎{sentiment}（升级概率 {p_escalate:.2f} ≥ 阈值 {threshold:.2f}）",
        "sent_neutral": "平稳", "sent_negative": "不满", "sent_urgent": "很着急",
        "truncated": "消息过长，检索前已截短。",
        "sources": "来源（{n}）",
        "col_faq_id": "问题编号", "col_score": "得分", "col_rerank": "重排序", "col_dense": "语义", "col_lexical": "关键词",
        "col_matched_text": "匹配文本", "col_question": "标准问题",
        "rating_off": "评价功能已关闭：无法打开反馈数据库（见上方错误）。",
        "thanks": "感谢您的反馈 ",
        "helpful": "回答有帮助",
        "not_helpful": "没有帮助",
        "err_rating": "无法保存反馈",
        "clear": "清空对话",
        "lang_en": "英文", "lang_zh": "中文", "lang_ja": "日文", "lang_ko": "韩文", "lang_ru": "俄文",
        "lang_el": "希腊文", "lang_ar": "阿拉伯文", "lang_he": "希伯来文", "lang_th": "泰文", "lang_hi": "印地文",
        "lang_und": "未知",
        "fb_count": "`{location}` 中有 {n} 条评价",
        "fb_imported": "已从旧反馈文件 `{path}` 导入 {n} 条评价。",
        "fb_thumbs_up": "好评率",
        "fb_download": "下载反馈（CSV）",
        "kb_intro": "上传知识库（CSV、JSON 或 JSONL，含 `id, question, answer` 字段，可选 `paraphrases`、`category`、"
                    "`url`）。文件会先经过校验；重建索引时会重新编码并注册为新模型。",
        "kb_file": "知识库文件",
        "err_kb_invalid": "知识库文件无效",
        "kb_valid": "校验通过：{n} 条问答，{p} 条相似问法。",
        "kb_rebuild": "重建索引",
        "err_rebuild": "重建失败",
        "starting": "开始",
        "kb_registered": "已注册 {name}，请在侧边栏中选择它。",
        "stage_reading the knowledge base": "正在读取知识库",
        "stage_loading the encoder": "正在加载编码器",
        "stage_fine-tuning the bi-encoder": "正在微调双塔编码器",
        "stage_encoding the knowledge base": "正在编码知识库",
        "stage_calibrating retrieval and hand-off": "正在校准检索与转人工阈值",
        "stage_training the re-ranker (second stage)": "正在训练重排序模型（第二阶段）",
        "stage_training the intent classifier": "正在训练意图分类器",
        "stage_training the sentiment / urgency classifier": "正在训练情绪 / 紧急程度分类器",
        "stage_evaluating on the held-out questions": "正在在留出问题上评估",
        "stage_profiling the held-out questions for monitoring": "正在为监控统计留出问题的特征",
        "stage_writing the bundle": "正在写入模型包",
        "stage_measuring the old and the new bundle": "正在对比新旧模型包",
        "stage_done": "完成",
        "m_top1_accuracy": "Top-1 准确率", "m_mrr": "MRR", "m_handoff_recall": "转人工召回率",
        "m_answered_precision": "作答精确率",
        "review_intro": "助手没答好的问题（被点踩，或由人工客服用已有问答解决）会成为候选相似问法。"
                        "通过的问法会加入对应问答，并重建模型（索引、分类器和转人工校准），在模型库中注册为下一个版本。",
        "review_off": "审核功能已关闭：无法打开服务数据库（见上方错误）。",
        "review_no_db": "还没有服务数据库：首次评价或运行 `lepton-apps serve` 时会创建。",
        "review_no_model": "请在侧边栏选择一个客服模型：候选问法会对照它的知识库提出。",
        "reviewer": "审核人",
        "collect": "收集候选问法",
        "collect_help": "来自点踩的评价和人工处理结果",
        "err_collect": "无法收集候选问法",
        "collected": "新增 {added} 条候选问法；跳过：{known_source} 条此前已收集，{in_kb} 条已在知识库中，"
                     "{duplicate} 条重复，{answered_right} 条已答对，{out_of_scope} 条超出范围，{no_question} 条没有问题文本。",
        "pending": "{n} 条待审核候选问法",
        "candidate": "{reason} · {source} · 当时回答：{answered} · 建议归入：{proposed}",
        "cand_thumbs-down": "被点踩", "cand_thumbs-down-resolved": "被点踩，已由人工客服解决",
        "cand_handoff-resolved": "转人工后由人工客服解决",
        "cand_wrong-answer-resolved": "回答错误，已由人工客服解决",
        "answered_handoff": "转人工",
        "faq": "问答",
        "assign": "归入某个问答",
        "accept": "通过",
        "reject": "拒绝",
        "err_decide": "无法保存审核结果",
        "accepted": "已通过 {n} 条",
        "rebuild_name": "重建模型在模型库中的名称",
        "rebuild_name_help": "当前模型是模型库之外的文件夹：新版本将命名为 NAME.v2, …",
        "rebuild_apply": "用 {n} 条已通过的相似问法重建模型",
        "applied": "已注册 {name}；请在侧边栏中选择它，用 `lepton-apps monitor live support` 在线对比，"
                   "用 `lepton-apps models promote {name}` 将其设为正式版本。",
        "decided": "已处理（{n}）",
    },
}


def stage_text(stage: str, texts: dict[str, str]) -> str:
    """Return a rebuild stage (reported by ``training.build`` / ``train`` and ``review.apply_accepted`` as
    ``progress(stage, fraction)``) as the page shows it; the stage as reported when the table does not name it."""
    return texts.get(f"stage_{stage}", stage)


def page_language(kb_language: str | None) -> str:
    """Return the page language for a knowledge base in ``kb_language``: "zh" for a Chinese KB, else "en"."""
    return "zh" if kb_language == "zh" else "en"


def language_name(code: str | None, texts: dict[str, str]) -> str:
    """Return the detected language ``code`` as shown on the page, e.g. "Chinese (zh)"; the bare code for a
    language the table does not name."""
    code = code or "und"
    name = texts.get(f"lang_{code}")
    return f"{name} ({code})" if name else code


def _filled(template: str | None, values: dict) -> str | None:
    """Return ``template`` filled from ``values``; None when there is no template or a value it names is missing
    or of the wrong type."""
    if template is None:
        return None
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError, TypeError):
        return None


def sentiment_name(label: str | None, texts: dict[str, str]) -> str:
    """Return the sentiment ``label`` of a reply as shown on the page; the label itself for one the table does not
    name (a bundle trained with its own labels)."""
    return texts.get(f"sent_{label}", label or "")


def handoff_text(reply: dict, texts: dict[str, str]) -> str:
    """Return the hand-off reason of ``reply`` (an Answer's ``to_dict()``) in the page's language: the template of
    its ``handoff_code`` filled from its ``handoff_detail``; the reply's English ``handoff_reason`` for a code the
    table does not know (or a reply from before the codes)."""
    code = reply.get("handoff_code")
    text = _filled(texts.get(f"reason_{code}") if code else None, reply.get("handoff_detail") or {})
    return text if text is not None else str(reply.get("handoff_reason") or "")


def escalation_text(reply: dict, texts: dict[str, str]) -> str:
    """Return why ``reply`` (an Answer's ``to_dict()``) is escalated, in the page's language, from its
    ``escalation_detail``; the reply's English ``escalation_reason`` when the detail is missing."""
    detail = dict(reply.get("escalation_detail") or {})
    if "sentiment" in detail:
        detail["sentiment"] = sentiment_name(detail["sentiment"], texts)
    text = _filled(texts.get("escalation_reason") if detail else None, detail)
    return text if text is not None else str(reply.get("escalation_reason") or "")


def candidate_reason(reason: str, texts: dict[str, str]) -> str:
    """Return why a question became a review candidate (``review.collect_candidates``'s reason) in the page's
    language; the reason itself for one the table does not name."""
    return texts.get(f"cand_{reason}", reason)
