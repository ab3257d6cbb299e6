//! `docraft ask`: questions over an index, answered from its chunks with citations.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use docraft_ask::{Answer, AskOptions, Asker, Turn};
use docraft_index::{Filter, Retrieval};
use docraft_train::generate::ChatModel;

#[derive(Args)]
pub struct AskArgs {
    /// The index: a directory (`docraft index build`, or RUN_DIR/index of `docraft run`) or a
    /// pgvector collection (`postgres://…/DB?collection=NAME`).
    index: PathBuf,
    /// The question. With --chat it is the first one (or leave it out) and the next ones are
    /// read from standard input, one per line.
    question: Option<String>,
    /// The model that answers: a GGUF file or a Hugging Face directory
    /// [default: $DOCRAFT_MODELS/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf].
    #[arg(long, value_name = "FILE.gguf|HF_DIR")]
    model: Option<PathBuf>,
    /// A LoRA adapter directory to apply (e.g. RUN_DIR/train/adapter).
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Chunks retrieved per question.
    #[arg(short, long, default_value_t = 5)]
    k: usize,
    /// Only chunks matching KEY=VALUE (as in `docraft search`: source=GLOB, page=N, language=es, ...).
    #[arg(long, value_name = "KEY=VALUE")]
    filter: Vec<String>,
    #[command(flatten)]
    search: crate::search::RetrievalArgs,
    /// Below this cosine similarity of the best chunk, say the documents do not answer
    /// (checked in vector retrieval only: keyword and hybrid scores are not similarities).
    #[arg(long, default_value_t = 0.15)]
    min_score: f32,
    /// Share of the question's content words that must appear in the retrieved chunks, else
    /// say the documents do not answer.
    #[arg(long, default_value_t = 0.6)]
    min_word_coverage: f64,
    /// Most tokens per answer.
    #[arg(long, default_value_t = 200)]
    max_tokens: u32,
    /// 0 for greedy decoding (the same answer every time).
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// A conversation: follow-up questions are read from standard input and rewritten with
    /// the history before retrieval ("and in Spanish offices?" -> a standalone question).
    #[arg(long)]
    chat: bool,
    /// Print each answer as one JSON object (text, declined, citations, sources) instead of
    /// streaming it.
    #[arg(long)]
    json: bool,
    /// Run the model on CUDA (a build with `--features cuda`).
    #[arg(long)]
    cuda: bool,
}

pub fn ask(a: &AskArgs) -> Result<ExitCode> {
    let search = a.search.settings();
    let opened = docraft_pipeline::stage::index::open_store(&a.index, None, None, &search)?;
    let retriever = opened.retriever(Filter::parse(&a.filter)?, &search)?;
    let by_vector = opened.retrieval(&search) == Retrieval::Vector;
    let model_path = a.model.clone().unwrap_or_else(docraft_llm::default_gguf);
    let device = docraft_train::device(a.cuda)?;
    let model = ChatModel::load(&model_path, a.adapter.as_deref(), &device)
        .with_context(|| format!("loading the model {}", model_path.display()))?;
    let options = AskOptions {
        k: a.k,
        min_score: a.min_score,
        min_word_coverage: a.min_word_coverage,
        max_tokens: a.max_tokens,
        temperature: a.temperature,
        seed: a.seed,
        ..AskOptions::default()
    }
    .for_scores(by_vector);
    let asker = Asker::new(retriever.as_ref(), &model).with_options(options)?;
    let mut history: Vec<Turn> = Vec::new();
    let one = |question: &str, history: &mut Vec<Turn>| -> Result<()> {
        let answer = answer(&asker, question, history, a.json)?;
        history.push(Turn { question: question.to_string(), answer: answer.text });
        Ok(())
    };
    if let Some(q) = &a.question {
        one(q, &mut history)?;
    }
    if a.chat {
        for line in std::io::stdin().lock().lines() {
            let line = line?;
            if !line.trim().is_empty() {
                one(line.trim(), &mut history)?;
            }
        }
    } else if a.question.is_none() {
        anyhow::bail!("give a question, or --chat to read questions from standard input");
    }
    Ok(ExitCode::SUCCESS)
}

fn answer(asker: &Asker<'_>, question: &str, history: &[Turn], json: bool) -> Result<Answer> {
    let mut out = std::io::stdout().lock();
    let answer = if json {
        asker.ask(question, history, &mut |_| {})?
    } else {
        asker.ask(question, history, &mut |t| {
            let _ = write!(out, "{t}");
            let _ = out.flush();
        })?
    };
    if json {
        writeln!(out, "{}", serde_json::to_string(&answer)?)?;
        return Ok(answer);
    }
    writeln!(out)?;
    if answer.query != question {
        writeln!(out, "(searched for: {})", answer.query)?;
    }
    if answer.declined {
        writeln!(out, "({})", answer.decline_reason.as_deref().unwrap_or("declined"))?;
    } else if answer.citations.is_empty() {
        writeln!(out, "(no sentence of the answer could be traced to the sources)")?;
    } else {
        writeln!(out, "Sources:")?;
        for c in &answer.citations {
            let how = match c.how {
                docraft_ask::Attribution::Marker => "cited by the model",
                docraft_ask::Attribution::Overlap => "the answer uses its words",
                docraft_ask::Attribution::Quote => "quoted",
            };
            writeln!(out, "  [{}] {}  ({how})", c.number, c.label)?;
        }
    }
    writeln!(out)?;
    Ok(answer)
}
