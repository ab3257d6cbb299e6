#!/usr/bin/env python3
"""Python onnxruntime embedding throughput on the same texts, model file and thread count as
crates/index/examples/bench_embed.rs (see docs/BENCHMARKS.md). Batches are formed in input
order (what a plain loop does) and, for a like-for-like comparison, also after sorting by length.
Usage: pip install onnxruntime==1.31.1 tokenizers numpy
       scripts/bench_embed.py MODEL_DIR CHUNKS.jsonl [N_CHUNKS] [THREADS] [BATCHES] [ORDERS]
BATCHES: comma-separated (default 1,8,32); ORDERS: input,sorted (default both)."""
import json, sys, time
import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

model_dir, chunks_path = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 512
threads = int(sys.argv[4]) if len(sys.argv) > 4 else 2
batches = [int(b) for b in (sys.argv[5] if len(sys.argv) > 5 else "1,8,32").split(",")]
orders = (sys.argv[6] if len(sys.argv) > 6 else "input,sorted").split(",")
texts = [json.loads(l)["text"] for l in open(chunks_path, encoding="utf-8") if l.strip()][:n]
tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
tok.enable_truncation(256)
tokens = sum(len(tok.encode(t).ids) for t in texts)
tok.enable_padding(pad_id=0, pad_token="[PAD]")
opts = ort.SessionOptions()
opts.intra_op_num_threads = threads
opts.inter_op_num_threads = 1
sess = ort.InferenceSession(f"{model_dir}/model.onnx", opts, providers=["CPUExecutionProvider"])
names = {i.name for i in sess.get_inputs()}

def embed(batch):
    encs = tok.encode_batch(batch)
    ids = np.array([e.ids for e in encs], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in names:
        feeds["token_type_ids"] = np.array([e.type_ids for e in encs], dtype=np.int64)
    hidden = sess.run(None, feeds)[0]
    m = mask[:, :, None].astype(np.float32)
    v = (hidden * m).sum(1) / m.sum(1)
    return v / np.linalg.norm(v, axis=1, keepdims=True)

print(f"{len(texts)} chunks, {tokens} tokens, {threads} threads, onnxruntime {ort.__version__}")
for order in orders:
    seq = texts if order == "input" else sorted(texts, key=len)
    for b in batches:
        embed(seq[:8])
        t = time.perf_counter()
        for i in range(0, len(seq), b):
            embed(seq[i:i + b])
        s = time.perf_counter() - t
        print(f"python onnxruntime ({order} order) batch {b:>2}: {len(seq) / s:7.1f} chunks/s {tokens / s:8.0f} tokens/s ({s:.2f} s)")
