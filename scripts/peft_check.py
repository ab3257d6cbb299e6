#!/usr/bin/env python3
"""Checks docraft's LoRA adapters against Hugging Face peft, both ways, on the converted base.

1. peft loads OUR adapter onto the HF base (`docraft convert` output): logits must match ours.
2. peft writes an adapter (random A and B), our loader reads it: logits must match peft's.
Usage: peft_check.py HF_DIR OUR_ADAPTER_DIR ADAPTER_LOGITS_BIN  (scripts/peft_check.sh sets it up)
Prints one JSON line with the max abs differences; exits 1 if either exceeds 1e-3."""
import json, subprocess, sys, tempfile
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoTokenizer, LlamaForCausalLM

hf, ours, binary = sys.argv[1:4]
text = "<|im_start|>user\n¿Qué dice el documento sobre las vacaciones?<|im_end|>\n<|im_start|>assistant\nSegún"
torch.manual_seed(0)

def docraft_logits(adapter):
    out = subprocess.run([binary, hf, adapter, text], check=True, capture_output=True, text=True).stdout
    v = json.loads(out)
    return v["ids"], torch.tensor(v["logits"])

def torch_logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, -4:]

ids, mine = docraft_logits(ours)
tok_ids = AutoTokenizer.from_pretrained(hf)(text, add_special_tokens=False)["input_ids"]
base = LlamaForCausalLM.from_pretrained(hf, dtype=torch.float32)
base_logits = torch_logits(base, ids)
model = PeftModel.from_pretrained(base, ours)
theirs = torch_logits(model, ids)
d1 = (mine - theirs).abs().max().item()
moved = (theirs - base_logits).abs().max().item()

base = LlamaForCausalLM.from_pretrained(hf, dtype=torch.float32)
cfg = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                 init_lora_weights=False, task_type="CAUSAL_LM")
pm = get_peft_model(base, cfg)
with tempfile.TemporaryDirectory() as tmp:
    pm.save_pretrained(tmp)
    expected = torch_logits(pm, ids)
    _, got = docraft_logits(tmp)
d2 = (got - expected).abs().max().item()
ok = d1 <= 1e-3 and d2 <= 1e-3 and moved > 1e-2 and tok_ids == ids
print(json.dumps({"ours_in_peft_max_abs_diff": d1, "adapter_moved_logits_by": moved,
                  "peft_in_ours_max_abs_diff": d2, "tokenizer_ids_equal": tok_ids == ids, "ok": ok}))
sys.exit(0 if ok else 1)
