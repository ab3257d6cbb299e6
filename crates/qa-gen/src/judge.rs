//! The optional judge step: a second model scores each pair that passed the filters, 1 to 5
//! for faithfulness and usefulness with a short reason, and a threshold keeps or rejects it.
//!
//! Any [`Generator`] can judge (another local GGUF, an endpoint, or the generator that wrote
//! the pairs). The prompt files are `prompts/judge.*.txt` (Spanish chunks get the Spanish
//! prompt, others the English one); the reply is JSON `{"faithfulness": N, "usefulness": N,
//! "reason": "..."}`, parsed leniently ([`parse_scores`]).
//!
//! Every pair the judge sees ends in exactly one place:
//!
//! - both scores at or above [`JudgeOptions::min_score`]: kept, with its [`JudgeScores`] in
//!   the pair's `judge` field;
//! - a score below: rejected as [`Reason::JudgeLowScore`](crate::Reason::JudgeLowScore);
//! - output without two scores from 1 to 5: rejected as
//!   [`Reason::JudgeUnparseable`](crate::Reason::JudgeUnparseable), with the judge's output
//!   in the record's `raw`. A pair nobody vouched for is not kept, and it is not lost: the
//!   rejected file holds it whole, so it can be judged again or taken back by hand;
//! - the judge's backend failed: rejected as
//!   [`Reason::JudgeError`](crate::Reason::JudgeError), with the error.
//!
//! ```
//! use docraft_qa_gen::judge::parse_scores;
//!
//! let s = parse_scores("```json\n{\"Faithfulness\": \"5\", \"usefulness\": 4.0, \"reason\": \"ok\"}\n```");
//! assert_eq!(s.map(|s| (s.faithfulness, s.usefulness, s.reason)), Some((5, 4, "ok".to_string())));
//! assert_eq!(parse_scores("fidelidad: 2/5, utilidad 3 - la respuesta inventa").map(|s| s.usefulness), Some(3));
//! assert!(parse_scores("Looks fine to me.").is_none());
//! ```

use docraft_core::prompt::render;
use docraft_core::rng::derived_seed;
use docraft_core::text::fold;
use docraft_core::{
    ChatMessage, Chunk, GenError, GenRequest, GenResponse, Generator, JudgeScores, Role, Sampling, Usage, content_hash,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::parse::RawPair;
use crate::{QaGenError, Result};

const SYSTEM_EN: &str = include_str!("../prompts/judge.system.en.txt");
const USER_EN: &str = include_str!("../prompts/judge.user.en.txt");
const SYSTEM_ES: &str = include_str!("../prompts/judge.system.es.txt");
const USER_ES: &str = include_str!("../prompts/judge.user.es.txt");

pub(crate) const FILE_SYSTEM_EN: (&str, &str) = ("qa-gen/judge.system.en.txt", SYSTEM_EN);
pub(crate) const FILE_USER_EN: (&str, &str) = ("qa-gen/judge.user.en.txt", USER_EN);
pub(crate) const FILE_SYSTEM_ES: (&str, &str) = ("qa-gen/judge.system.es.txt", SYSTEM_ES);
pub(crate) const FILE_USER_ES: (&str, &str) = ("qa-gen/judge.user.es.txt", USER_ES);

/// The judge's prompt files by name (also in [`crate::prompt::PROMPTS`], which the run
/// manifest hashes).
pub const JUDGE_PROMPTS: &[(&str, &str)] = &[FILE_SYSTEM_EN, FILE_USER_EN, FILE_SYSTEM_ES, FILE_USER_ES];

/// Name of the built-in judge prompt.
pub const JUDGE_PROMPT_NAME: &str = "judge-v1";

/// Longest reason the schema allows, in characters.
const MAX_REASON_CHARS: usize = 300;

/// Settings of the judge step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct JudgeOptions {
    /// Least score (1..=5) both faithfulness and usefulness must reach for a pair to be kept.
    pub min_score: u8,
    /// Most tokens per verdict.
    pub max_tokens: u32,
    /// Sampling; its seed is the run's (each pair gets its own seed derived from it).
    pub sampling: Sampling,
}

impl Default for JudgeOptions {
    fn default() -> Self {
        Self { min_score: 3, max_tokens: 160, sampling: Sampling { temperature: 0.0, ..Sampling::default() } }
    }
}

/// What the judge made of one pair.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Both scores reach the threshold.
    Keep(JudgeScores),
    /// A score is below the threshold; the judge's output beside.
    Low(JudgeScores, String),
    /// No scores could be read from the output (kept whole).
    Unparseable(String),
    /// The backend failed.
    Failed(String),
}

/// The scores read from a judge's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scores {
    /// Faithfulness, 1..=5.
    pub faithfulness: u8,
    /// Usefulness, 1..=5.
    pub usefulness: u8,
    /// The reason (empty when none was given).
    pub reason: String,
}

/// A judge: a generator and the threshold.
pub struct Judge<'a> {
    generator: &'a dyn Generator,
    options: JudgeOptions,
    model: String,
    prompt_id: String,
}

impl std::fmt::Debug for Judge<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Judge").field("model", &self.model).field("options", &self.options).finish_non_exhaustive()
    }
}

impl<'a> Judge<'a> {
    /// A judge scoring with `generator`.
    ///
    /// # Errors
    /// [`QaGenError::Setting`] for a threshold outside 1..=5 or fewer than 16 tokens.
    pub fn new(generator: &'a dyn Generator, options: JudgeOptions) -> Result<Self> {
        if !(1..=5).contains(&options.min_score) {
            return Err(QaGenError::Setting {
                name: "judge_min_score",
                reason: format!("{} is not in 1..=5", options.min_score),
            });
        }
        if options.max_tokens < 16 {
            return Err(QaGenError::Setting { name: "judge_max_tokens", reason: "must be at least 16".into() });
        }
        let all = [SYSTEM_EN, USER_EN, SYSTEM_ES, USER_ES, &schema().to_string()].concat();
        let prompt_id = format!("{JUDGE_PROMPT_NAME}@{}", &content_hash(all.as_bytes())[..12]);
        Ok(Self { generator, options, model: generator.model_id(), prompt_id })
    }

    /// The options.
    #[must_use]
    pub fn options(&self) -> &JudgeOptions {
        &self.options
    }

    /// The judge model's id.
    #[must_use]
    pub fn model(&self) -> &str {
        &self.model
    }

    /// `name@hash` of the judge prompt.
    #[must_use]
    pub fn prompt_id(&self) -> &str {
        &self.prompt_id
    }

    /// The chat asking for a verdict on `pair` about `chunk`, in the chunk's language `lang`.
    ///
    /// # Errors
    /// [`QaGenError::Prompt`] when a template names a variable the judge does not give.
    pub fn render(&self, chunk: &Chunk, lang: &str, pair: &RawPair) -> Result<Vec<ChatMessage>> {
        let ((system_name, system), (user_name, user)) = match lang {
            "es" => (FILE_SYSTEM_ES, FILE_USER_ES),
            _ => (FILE_SYSTEM_EN, FILE_USER_EN),
        };
        let source = chunk.source.rsplit(['/', '\\']).next().unwrap_or(&chunk.source);
        let vars = [
            ("source", source),
            ("text", chunk.text.trim()),
            ("question", pair.question.as_str()),
            ("answer", pair.answer.as_str()),
        ];
        Ok(vec![
            ChatMessage::new(Role::System, render(system_name, system, &vars)?.trim_end()),
            ChatMessage::new(Role::User, render(user_name, user, &vars)?.trim_end()),
        ])
    }

    /// Verdicts on `items` (chunk, its language, the pair), in order, each with the tokens it
    /// took. One batch to the generator.
    ///
    /// # Errors
    /// [`QaGenError::Prompt`] for a broken prompt file. Backend failures and bad output are
    /// verdicts, not errors.
    pub fn judge(&self, items: &[(&Chunk, &str, &RawPair)]) -> Result<Vec<(Verdict, Usage)>> {
        let requests: Vec<GenRequest> = items
            .iter()
            .map(|(chunk, lang, pair)| {
                let seed = derived_seed(self.options.sampling.seed, &["judge", chunk.id.as_str(), &pair.question]);
                Ok(GenRequest {
                    messages: self.render(chunk, lang, pair)?,
                    max_tokens: self.options.max_tokens,
                    sampling: Sampling { seed, ..self.options.sampling },
                    json_schema: Some(schema()),
                    tag: format!("judge {}", chunk.id),
                })
            })
            .collect::<Result<_>>()?;
        let mut results = if requests.is_empty() { Vec::new() } else { self.generator.generate_batch(&requests) };
        results.resize_with(requests.len(), || Err(GenError::Permanent("the backend returned no result".into())));
        Ok(results
            .into_iter()
            .map(|r| match r {
                Ok(GenResponse { text, usage, .. }) => (self.verdict(text), usage),
                Err(e) => (Verdict::Failed(e.to_string()), Usage::default()),
            })
            .collect())
    }

    fn verdict(&self, raw: String) -> Verdict {
        let Some(s) = parse_scores(&raw) else { return Verdict::Unparseable(raw) };
        let scores = JudgeScores {
            faithfulness: s.faithfulness,
            usefulness: s.usefulness,
            reason: s.reason,
            model: self.model.clone(),
            prompt: self.prompt_id.clone(),
        };
        if scores.faithfulness >= self.options.min_score && scores.usefulness >= self.options.min_score {
            Verdict::Keep(scores)
        } else {
            Verdict::Low(scores, raw)
        }
    }
}

/// The JSON Schema of a verdict: two integers 1..=5 and a bounded reason.
#[must_use]
pub fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "faithfulness": {"type": "integer", "enum": [1, 2, 3, 4, 5]},
            "usefulness": {"type": "integer", "enum": [1, 2, 3, 4, 5]},
            "reason": {"type": "string", "maxLength": MAX_REASON_CHARS}
        },
        "required": ["faithfulness", "usefulness", "reason"],
        "additionalProperties": false
    })
}

const FAITHFUL_KEYS: &[&str] = &["faithfulness", "faithful", "fidelity", "fidelidad", "fiel"];
const USEFUL_KEYS: &[&str] = &["usefulness", "useful", "utility", "utilidad", "util"];
const REASON_KEYS: &[&str] =
    &["reason", "reasoning", "explanation", "rationale", "motivo", "razon", "justificacion", "explicacion"];

/// Reads the scores from a judge's output, leniently: a JSON object anywhere in the text
/// (code fences and prose around it are fine; keys in any case, English or Spanish:
/// `faithfulness`/`fidelidad`, `usefulness`/`utilidad`, `reason`/`motivo`; scores as
/// numbers, `"4"` or `"4/5"`), else `key: N` in plain text. `None` unless both scores are
/// found and each is a whole number from 1 to 5.
#[must_use]
pub fn parse_scores(raw: &str) -> Option<Scores> {
    if let Some(s) = from_json(raw) {
        return Some(s);
    }
    let text = fold(raw);
    let faithfulness = score_after(&text, FAITHFUL_KEYS)?;
    let usefulness = score_after(&text, USEFUL_KEYS)?;
    let reason = raw
        .lines()
        .find_map(|line| {
            let f = fold(line);
            let f = f.trim_start_matches(|c: char| !c.is_alphanumeric());
            REASON_KEYS.iter().any(|k| f.starts_with(k)).then(|| {
                line.split_once([':', '=']).map_or("", |(_, r)| r).trim().trim_matches(['"', ',']).trim().to_string()
            })
        })
        .unwrap_or_default();
    Some(Scores { faithfulness, usefulness, reason })
}

fn from_json(raw: &str) -> Option<Scores> {
    let start = raw.find('{')?;
    let end = raw.rfind('}')?;
    let value: Value = serde_json::from_str(raw.get(start..=end)?).ok()?;
    let obj = value.as_object()?;
    let field = |keys: &[&str]| {
        obj.iter().find(|(k, _)| keys.contains(&fold(k).trim_matches(|c: char| !c.is_alphanumeric()))).map(|(_, v)| v)
    };
    let faithfulness = score_value(field(FAITHFUL_KEYS)?)?;
    let usefulness = score_value(field(USEFUL_KEYS)?)?;
    let reason = field(REASON_KEYS).and_then(Value::as_str).unwrap_or_default().trim().to_string();
    Some(Scores { faithfulness, usefulness, reason })
}

fn score_value(v: &Value) -> Option<u8> {
    match v {
        Value::Number(n) => {
            let f = n.as_f64()?;
            (f.fract() == 0.0 && (1.0..=5.0).contains(&f)).then(|| {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let s = f as u8;
                s
            })
        }
        Value::String(s) => first_score(s),
        _ => None,
    }
}

/// The score in `s`: its first number, when it is a whole number 1..=5 (`"4"`, `"4/5"`,
/// `"4 out of 5"`).
fn first_score(s: &str) -> Option<u8> {
    let t = s.trim_start();
    let digits: String = t.chars().take_while(char::is_ascii_digit).collect();
    let rest = &t[digits.len()..];
    if digits.is_empty() || (rest.starts_with(['.', ',']) && rest[1..].starts_with(|c: char| c.is_ascii_digit())) {
        return None;
    }
    digits.parse::<u8>().ok().filter(|n| (1..=5).contains(n))
}

/// The score written after the first of `keys` in folded `text` (`faithfulness: 4`,
/// `fidelidad = 4/5`).
fn score_after(text: &str, keys: &[&str]) -> Option<u8> {
    keys.iter().find_map(|k| {
        let at = text.find(k)? + k.len();
        let after = text[at..].trim_start_matches(|c: char| c.is_alphabetic());
        let after =
            after.trim_start_matches(|c: char| c.is_whitespace() || matches!(c, ':' | '=' | '"' | '\'' | '-' | '('));
        first_score(after)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_parse_accepts_what_models_write_and_refuses_what_is_not_a_score() {
        let ok = |raw: &str| parse_scores(raw).map(|s| (s.faithfulness, s.usefulness));
        assert_eq!(ok(r#"{"faithfulness": 5, "usefulness": 4, "reason": "Grounded."}"#), Some((5, 4)));
        assert_eq!(ok("Sure! ```json\n{\"faithfulness\": 2, \"usefulness\": 5, \"reason\": \"x\"}\n```"), Some((2, 5)));
        assert_eq!(ok(r#"{"Fidelidad": "4/5", "Utilidad": "3", "motivo": "bien"}"#), Some((4, 3)));
        assert_eq!(ok("Faithfulness: 4\nUsefulness: 2\nReason: vague question"), Some((4, 2)));
        assert_eq!(
            parse_scores("Faithfulness: 4\nUsefulness: 2\nReason: vague question").unwrap().reason,
            "vague question"
        );
        assert_eq!(ok(r#"{"faithfulness": 7, "usefulness": 4}"#), None, "out of range");
        assert_eq!(ok(r#"{"faithfulness": 4.5, "usefulness": 4}"#), None, "not a whole score");
        assert_eq!(ok(r#"{"faithfulness": "3.5", "usefulness": 4}"#), None);
        assert_eq!(ok(r#"{"faithfulness": 4}"#), None, "one score is not a verdict");
        assert_eq!(ok("The pair is good."), None);
        assert_eq!(ok(""), None);
    }

    #[test]
    fn the_schema_bounds_scores() {
        let s = schema();
        assert_eq!(s["properties"]["faithfulness"]["enum"], json!([1, 2, 3, 4, 5]));
        assert_eq!(s["required"], json!(["faithfulness", "usefulness", "reason"]));
    }
}
