//! Prints the logits of base + adapter for a text, as JSON, so another implementation (Python peft)
//! can be checked against ours: `{"ids": [...], "logits": [[...] per position]}` for the last 4
//! positions.
//!
//! ```text
//! cargo run --release -p docraft-train --example adapter_logits -- BASE ADAPTER_DIR "text"
//! ```

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use docraft_train::{Adapter, BaseModel, Inputs, Llama};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: adapter_logits BASE ADAPTER_DIR|- TEXT";
    let (base_path, adapter_dir, text) =
        (args.get(1).context(usage)?, args.get(2).context(usage)?, args.get(3).context(usage)?);
    let dev = Device::Cpu;
    let base = BaseModel::load(std::path::Path::new(base_path), &dev)?;
    let model = Llama::new(&base, DType::F32, &dev)?;
    let adapter = if adapter_dir == "-" {
        None
    } else {
        Some(Adapter::load_peft(std::path::Path::new(adapter_dir), &base.config, DType::F32, &dev)?)
    };
    let ids = base.tokenizer()?.encode(text.as_str(), false).map_err(anyhow::Error::msg)?.get_ids().to_vec();
    let inputs = Inputs::single(&ids, DType::F32, &dev)?;
    let logits = model.logits(&model.hidden(&inputs, adapter.as_ref(), None)?)?;
    let n = ids.len();
    let last = logits.narrow(0, n.saturating_sub(4), n.min(4))?.to_vec2::<f32>()?;
    println!("{}", serde_json::json!({"ids": ids, "logits": last}));
    Ok(())
}
