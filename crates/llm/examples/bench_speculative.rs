//! Shared-prompt reuse and speculative decoding (issue 21): question/answer generation on the
//! same chunks, one request at a time (as `docraft generate --parallel 1` sends them), greedy,
//! with the model alone, with the shared prompt prefix reused, and with a draft model on top.
//!
//! ```text
//! cargo run --release -p docraft-llm --example bench_speculative -- CHUNKS.jsonl [N_CHUNKS] [THREADS] [SETS]
//! ```
//! `CHUNKS.jsonl` from `docraft ingest`; the first `N_CHUNKS` (6) distinct English chunks of at
//! least 300 characters are used. `SETS` (default `qwen,smollm`) picks the model sets: `qwen` is
//! Qwen2.5-Coder-1.5B-Instruct with Qwen2.5-Coder-0.5B-Instruct as the draft, `smollm` is
//! SmolLM2-135M-Instruct without a draft (all under `$DOCRAFT_MODELS`, from
//! `scripts/setup.sh`).
//!
//! Two prompts: the built-in `qa-v1` prompt (its rules come after the passage, so the prompts
//! share only the system prompt and the start of the user message), and `rules-first`, the same
//! words with the rules moved into the system prompt, which every prompt then shares.
//!
//! Prints one line per run: prompt tokens (all / evaluated / from the prefix cache), generated
//! tokens, wall and CPU seconds, chunks/hour, parsed pairs/hour (of wall time, and of CPU time:
//! what an otherwise idle core would give), the draft's acceptance rate, tokens per main pass,
//! and whether every output is identical to the first run of the same prompt and model.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::PathBuf;
use std::time::Instant;

use docraft_core::{ChatMessage, Chunk, GenRequest, Generator, Role, Sampling, jsonl::read_all};
use docraft_llm::{LlamaConfig, LlamaGenerator, LlamaStats};
use docraft_qa_gen::{GenerateOptions, QaPrompt, parse_pairs};

/// `qa-v1`'s English rules, moved before the passage.
const RULES_FIRST_SYSTEM: &str = "You write question and answer pairs for training a model on an organization's \
    documents. You use only the facts in the passage you are given and you reply with JSON only.\n\
    Rules:\n\
    - Each answer states facts from the passage; copy its words where you can.\n\
    - Each question names its subject, so a reader who has not seen the passage understands it. Never write \
    \"the passage\" or \"the text\".\n\
    - Questions and answers are written in English.\n\
    Reply with JSON only: {\"pairs\": [{\"question\": \"...\", \"answer\": \"...\"}]}";

#[derive(Clone, Copy, PartialEq)]
enum Prompt {
    QaV1,
    RulesFirst,
}

impl Prompt {
    fn name(self) -> &'static str {
        match self {
            Self::QaV1 => "qa-v1",
            Self::RulesFirst => "rules-first",
        }
    }

    fn request(self, chunk: &Chunk, n: usize, max_tokens: u32) -> GenRequest {
        let prompt = QaPrompt::new(n);
        let messages = match self {
            Self::QaV1 => prompt.render(chunk, "en").unwrap(),
            Self::RulesFirst => {
                let source = chunk.source.rsplit(['/', '\\']).next().unwrap_or(&chunk.source);
                let headings = if chunk.headings.is_empty() {
                    String::new()
                } else {
                    format!(", section \"{}\"", chunk.headings.join(" > "))
                };
                let user = format!(
                    "Passage from {source}{headings}:\n\"\"\"\n{}\n\"\"\"\n\nWrite {n} question(s) that this passage \
                     alone answers, each with its answer.",
                    chunk.text.trim()
                );
                vec![ChatMessage::new(Role::System, RULES_FIRST_SYSTEM), ChatMessage::new(Role::User, user)]
            }
        };
        GenRequest {
            messages,
            max_tokens,
            sampling: Sampling { temperature: 0.0, ..Sampling::default() },
            json_schema: Some(prompt.schema()),
            tag: chunk.id.to_string(),
        }
    }
}

struct Run {
    label: String,
    prompt: Prompt,
    reuse: bool,
    draft: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().map_or("/tmp/chunks.jsonl", String::as_str);
    let n: usize = args.get(1).map_or(Ok(6), |s| s.parse())?;
    let threads: u32 = args.get(2).map_or(Ok(1), |s| s.parse())?;
    let sets: Vec<String> = args.get(3).map_or("qwen,smollm", String::as_str).split(',').map(str::to_string).collect();
    let models = docraft_core::models_dir();
    let qwen15 = models.join("qwen2.5-coder-1.5b-instruct/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf");
    let qwen05 = models.join("qwen2.5-coder-0.5b-instruct/qwen2.5-coder-0.5b-instruct.gguf");
    let smollm = models.join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");

    let (all, _) = read_all::<Chunk>(path)?;
    let mut seen = std::collections::HashSet::new();
    let chunks: Vec<Chunk> = all
        .into_iter()
        .filter(|c| QaPrompt::language_of(c) == "en" && c.text.len() >= 300 && seen.insert(c.text.clone()))
        .take(n)
        .collect();
    let options = GenerateOptions::default();
    let (per_chunk, max_tokens) = (options.questions_per_chunk, options.max_tokens);
    println!(
        "{} chunks from {path} ({}), {per_chunk} pairs asked per chunk, max_tokens {max_tokens}, greedy, parallel 1, \
         {threads} thread(s), OMP_WAIT_POLICY={}",
        chunks.len(),
        chunks.iter().map(|c| c.source.rsplit('/').next().unwrap_or("?")).collect::<Vec<_>>().join(", "),
        std::env::var("OMP_WAIT_POLICY").unwrap_or_else(|_| "(unset)".into())
    );
    println!(
        "model | prompt | run | prompt tok (all / evaluated / cached) | generated | wall s | CPU s | chunks/h | \
         pairs/h | pairs/h of CPU time | acceptance | tok/pass | identical"
    );
    for set in &sets {
        let (model, runs) = match set.as_str() {
            "qwen" => (
                &qwen15,
                vec![
                    run(Prompt::QaV1, false, None),
                    run(Prompt::QaV1, true, None),
                    run(Prompt::QaV1, true, Some(&qwen05)),
                    run(Prompt::RulesFirst, false, None),
                    run(Prompt::RulesFirst, true, None),
                    run(Prompt::RulesFirst, true, Some(&qwen05)),
                ],
            ),
            "smollm" => (
                &smollm,
                vec![
                    run(Prompt::QaV1, false, None),
                    run(Prompt::QaV1, true, None),
                    run(Prompt::RulesFirst, false, None),
                    run(Prompt::RulesFirst, true, None),
                ],
            ),
            other => anyhow::bail!("unknown set {other:?}: qwen or smollm"),
        };
        let name = model.file_name().map_or_else(String::new, |f| f.to_string_lossy().into_owned());
        let mut baseline: Vec<(Prompt, Vec<String>)> = Vec::new();
        for r in runs {
            let cfg = LlamaConfig::new(model)
                .with_parallel(1)?
                .with_threads(threads)?
                .with_prefix_reuse(r.reuse)
                .with_draft_model(r.draft.clone());
            let g = LlamaGenerator::load(cfg)?;
            let requests: Vec<GenRequest> = chunks.iter().map(|c| r.prompt.request(c, per_chunk, max_tokens)).collect();
            let (start, cpu_start) = (Instant::now(), cpu_seconds());
            let texts: Vec<String> =
                requests.iter().map(|q| g.generate(q).map(|o| o.text).unwrap_or_default()).collect();
            let (secs, cpu) = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu_start);
            let s: LlamaStats = g.stats();
            let pairs: usize = texts.iter().map(|t| parse_pairs(t).map_or(0, |p| p.pairs.len())).sum();
            let identical = match baseline.iter().find(|(p, _)| *p == r.prompt) {
                Some((_, first)) => {
                    let same = first.iter().zip(&texts).filter(|(a, b)| a == b).count();
                    format!("{same}/{}", texts.len())
                }
                None => {
                    baseline.push((r.prompt, texts.clone()));
                    "(reference)".into()
                }
            };
            #[allow(clippy::cast_precision_loss)]
            let (cph, pph, pph_cpu, per_pass) = (
                chunks.len() as f64 * 3600.0 / secs,
                pairs as f64 * 3600.0 / secs,
                pairs as f64 * 3600.0 / cpu,
                s.completion_tokens as f64 / s.decode_steps.max(1) as f64,
            );
            let acceptance = s.acceptance_rate().map_or_else(|| "-".into(), |a| format!("{:.0}%", a * 100.0));
            let draft_note = if r.draft.is_some() {
                format!(
                    " (draft: {} prompt tok evaluated, {} proposed)",
                    s.draft_prompt_tokens_evaluated, s.draft_tokens
                )
            } else {
                String::new()
            };
            println!(
                "{name} | {} | {} | {} / {} / {} | {} | {secs:.1} | {cpu:.1} | {cph:.0} | {pph:.0} | {pph_cpu:.0} | \
                 {acceptance} | {per_pass:.2} | {identical}{draft_note}",
                r.prompt.name(),
                r.label,
                s.prompt_tokens,
                s.prompt_tokens_evaluated,
                s.prompt_tokens_cached,
                s.completion_tokens,
            );
            if std::env::var_os("BENCH_PRINT").is_some() {
                for t in &texts {
                    println!("    {t:?}");
                }
            }
        }
    }
    Ok(())
}

/// CPU time of this process so far (user + system), from `/proc/self/stat` (100 ticks/s): on
/// a machine shared with other work it tells the work done better than the wall clock.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<f64> = rest.split_whitespace().map(|f| f.parse().unwrap_or(0.0)).collect();
    (fields.get(11).copied().unwrap_or(0.0) + fields.get(12).copied().unwrap_or(0.0)) / 100.0
}

fn run(prompt: Prompt, reuse: bool, draft: Option<&PathBuf>) -> Run {
    let label = match (reuse, draft) {
        (false, None) => "plain".to_string(),
        (true, None) => "prefix reuse".to_string(),
        (false, Some(_)) => "draft 0.5B".to_string(),
        (true, Some(_)) => "prefix reuse + draft 0.5B".to_string(),
    };
    Run { label, prompt, reuse, draft: draft.cloned() }
}
