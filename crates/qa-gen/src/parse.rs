//! Turning model output into question/answer pairs, repairing the breakage small models and
//! cut-off generations leave.
//!
//! Accepted shapes: `{"pairs": [..]}` (or any key holding a list of pairs), a bare list of
//! pairs, a single pair object, and, when no JSON is found at all, plain text in the
//! `Question: .. Answer: ..` style (English or Spanish labels). Repairs: code fences and
//! prose around the JSON, typographic quotes, trailing commas, and a document cut off by the
//! token limit (open strings and brackets are closed, the last incomplete pair dropped).

use serde_json::Value;

/// A pair as the model wrote it, before filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPair {
    /// The question, trimmed.
    pub question: String,
    /// The answer, trimmed.
    pub answer: String,
}

/// What came out of one model output.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    /// Complete pairs.
    pub pairs: Vec<RawPair>,
    /// Items that looked like pairs but lacked a question or an answer (their JSON text).
    pub incomplete: Vec<String>,
    /// Whether the text needed repair before it parsed.
    pub repaired: bool,
}

/// Why an output gave nothing usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseFailure(pub String);

const QUESTION_KEYS: &[&str] = &["question", "q", "pregunta", "query", "instruction", "prompt"];
const ANSWER_KEYS: &[&str] = &["answer", "a", "respuesta", "response", "output", "completion"];

/// Parses model output into pairs.
///
/// # Errors
/// [`ParseFailure`] when neither JSON (after repair) nor labelled text gives any item.
pub fn parse_pairs(raw: &str) -> Result<Parsed, ParseFailure> {
    let text = normalize_quotes(strip_fences(raw.trim()));
    let (value, repaired) = match find_json(&text) {
        Some(start) => {
            let body = &text[start..];
            match serde_json::Deserializer::from_str(body).into_iter::<Value>().next() {
                Some(Ok(v)) => (Some(v), text.len() != raw.trim().len() || start > 0),
                _ => (repair(body).and_then(|fixed| serde_json::from_str::<Value>(&fixed).ok()), true),
            }
        }
        None => (None, false),
    };
    let mut out = match value {
        Some(v) => from_value(&v),
        None => Parsed::default(),
    };
    out.repaired = repaired;
    if out.pairs.is_empty() && out.incomplete.is_empty() {
        let labelled = from_labels(&text);
        if !labelled.is_empty() {
            return Ok(Parsed { pairs: labelled, incomplete: Vec::new(), repaired: true });
        }
        let why = if raw.trim().is_empty() {
            "empty output"
        } else if find_json(&text).is_some() {
            "invalid JSON that could not be repaired, or JSON without question/answer pairs"
        } else {
            "no JSON and no Question/Answer labels in the output"
        };
        return Err(ParseFailure(why.to_string()));
    }
    Ok(out)
}

fn strip_fences(s: &str) -> &str {
    let Some(rest) = s.strip_prefix("```") else { return s };
    let rest = rest.split_once('\n').map_or(rest, |(_, body)| body);
    rest.rsplit_once("```").map_or(rest, |(body, _)| body).trim()
}

fn normalize_quotes(s: &str) -> String {
    s.replace(['\u{201c}', '\u{201d}', '\u{201e}'], "\"")
}

fn find_json(s: &str) -> Option<usize> {
    s.find(['{', '['])
}

/// Closes what a cut-off JSON document left open and removes trailing commas. Drops a last
/// object member or array element that was cut in the middle of a key.
fn repair(body: &str) -> Option<String> {
    let mut out = String::with_capacity(body.len() + 8);
    let mut stack = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    let mut ended = false;
    for c in body.chars() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                '\n' => {
                    out.push_str("\\n");
                    continue;
                }
                _ => {}
            }
            out.push(c);
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' => stack.push('}'),
            '[' => stack.push(']'),
            '}' | ']' => {
                drop_trailing_comma(&mut out);
                if stack.pop() != Some(c) {
                    return None;
                }
                if stack.is_empty() {
                    out.push(c);
                    ended = true;
                    break;
                }
            }
            _ => {}
        }
        out.push(c);
    }
    if ended {
        return Some(out);
    }
    if in_string {
        if escaped {
            out.pop();
        }
        out.push('"');
    }
    // A dangling key or `"key":` without its value cannot be completed: cut back to the last
    // complete member.
    loop {
        let t = out.trim_end();
        // The string at the end sits in the innermost open container: a key if that is an
        // object and the string follows `{` or `,`.
        if t.ends_with(':') || (t.ends_with('"') && stack.last() == Some(&'}') && dangling_key(t)) {
            let cut = t.rfind([',', '{']).unwrap_or(0);
            out.truncate(if t.as_bytes().get(cut) == Some(&b'{') { cut + 1 } else { cut });
            continue;
        }
        break;
    }
    drop_trailing_comma(&mut out);
    while let Some(close) = stack.pop() {
        drop_trailing_comma(&mut out);
        out.push(close);
    }
    Some(out)
}

/// True when the string `t` ends with follows `{` or `,` (in an object: a key without a
/// value, `{"a": "b", "c"`).
fn dangling_key(t: &str) -> bool {
    let bytes = t.as_bytes();
    let mut open = None;
    for i in (0..bytes.len().saturating_sub(1)).rev() {
        if bytes[i] == b'"' && bytes[..i].iter().rev().take_while(|b| **b == b'\\').count() % 2 == 0 {
            open = Some(i);
            break;
        }
    }
    let Some(open) = open else { return false };
    let before = t[..open].trim_end();
    before.ends_with('{') || before.ends_with(',')
}

fn drop_trailing_comma(out: &mut String) {
    let t = out.trim_end().len();
    if out[..t].ends_with(',') {
        out.truncate(t - 1);
    }
}

fn from_value(v: &Value) -> Parsed {
    let mut out = Parsed::default();
    match v {
        Value::Array(items) => items.iter().for_each(|i| push_item(i, &mut out)),
        Value::Object(map) => {
            if field(map, QUESTION_KEYS).is_some() || field(map, ANSWER_KEYS).is_some() {
                push_item(v, &mut out);
            } else if let Some(list) = map.values().find_map(Value::as_array) {
                list.iter().for_each(|i| push_item(i, &mut out));
            }
        }
        _ => {}
    }
    out
}

fn field<'a>(map: &'a serde_json::Map<String, Value>, keys: &[&str]) -> Option<&'a str> {
    map.iter().find(|(k, _)| keys.contains(&k.to_lowercase().as_str())).and_then(|(_, v)| v.as_str())
}

fn push_item(item: &Value, out: &mut Parsed) {
    let Value::Object(map) = item else { return };
    if map.is_empty() {
        return;
    }
    let q = field(map, QUESTION_KEYS).map(str::trim).unwrap_or_default();
    let a = field(map, ANSWER_KEYS).map(str::trim).unwrap_or_default();
    if q.is_empty() || a.is_empty() {
        out.incomplete.push(item.to_string());
    } else {
        out.pairs.push(RawPair { question: q.to_string(), answer: a.to_string() });
    }
}

/// `Question: ..` / `Answer: ..` (also `Q:`/`A:`, `Pregunta:`/`Respuesta:`) in plain text.
fn from_labels(text: &str) -> Vec<RawPair> {
    let mut pairs = Vec::new();
    let mut question: Option<String> = None;
    let mut answer: Option<String> = None;
    for line in text.lines() {
        let l = line.trim().trim_start_matches(|c: char| c.is_ascii_digit() || "-*.) ".contains(c));
        if let Some(q) = label(l, &["question", "q", "pregunta", "p"]) {
            if let (Some(q0), Some(a0)) = (question.take(), answer.take()) {
                pairs.push(RawPair { question: q0, answer: a0 });
            }
            question = Some(q.to_string());
        } else if let Some(a) = label(l, &["answer", "a", "respuesta", "r"]) {
            if question.is_some() {
                answer = Some(a.to_string());
            }
        } else if let Some(a) = answer.as_mut()
            && !l.is_empty()
        {
            a.push(' ');
            a.push_str(l);
        }
    }
    if let (Some(q), Some(a)) = (question, answer) {
        pairs.push(RawPair { question: q, answer: a });
    }
    pairs.retain(|p| !p.question.trim().is_empty() && !p.answer.trim().is_empty());
    pairs
}

fn label<'a>(line: &'a str, names: &[&str]) -> Option<&'a str> {
    let (head, rest) = line.split_once(':')?;
    let head = head.trim().trim_matches('*').to_lowercase();
    names.contains(&head.as_str()).then(|| rest.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qs(p: &Parsed) -> Vec<(&str, &str)> {
        p.pairs.iter().map(|p| (p.question.as_str(), p.answer.as_str())).collect()
    }

    #[test]
    fn clean_json() {
        let p = parse_pairs(r#"{"pairs":[{"question":"What is X?","answer":"X is Y."}]}"#).unwrap();
        assert_eq!(qs(&p), vec![("What is X?", "X is Y.")]);
        assert!(!p.repaired);
    }

    #[test]
    fn fenced_with_prose_and_other_shapes() {
        let p = parse_pairs("Here you go:\n```json\n[{\"Q\": \"a?\", \"A\": \"b\"}]\n```").unwrap();
        assert_eq!(qs(&p), vec![("a?", "b")]);
        let p = parse_pairs(r#"{"pregunta": "¿Qué?", "respuesta": "Esto."}"#).unwrap();
        assert_eq!(qs(&p), vec![("¿Qué?", "Esto.")]);
        let p = parse_pairs(r#"{"qa": [{"question": "x?", "answer": "y"}], "note": 1}"#).unwrap();
        assert_eq!(qs(&p), vec![("x?", "y")]);
    }

    #[test]
    fn trailing_commas_and_smart_quotes() {
        let p = parse_pairs("{\u{201c}pairs\u{201d}: [{\"question\": \"a?\", \"answer\": \"b\",},]}").unwrap();
        assert_eq!(qs(&p), vec![("a?", "b")]);
        assert!(p.repaired);
    }

    #[test]
    fn truncated_output_keeps_complete_pairs() {
        let raw = r#"{"pairs": [{"question": "One?", "answer": "First."}, {"question": "Two?", "answer": "Sec"#;
        let p = parse_pairs(raw).unwrap();
        assert_eq!(qs(&p), vec![("One?", "First."), ("Two?", "Sec")]);
        let raw = r#"{"pairs": [{"question": "One?", "answer": "First."}, {"question": "Two?", "ans"#;
        let p = parse_pairs(raw).unwrap();
        assert_eq!(qs(&p), vec![("One?", "First.")]);
        assert_eq!(p.incomplete.len(), 1, "the cut pair is reported, not dropped");
        let raw = r#"{"pairs": [{"question": "One?", "answer": "First."}, {"question": "#;
        let p = parse_pairs(raw).unwrap();
        assert_eq!(qs(&p), vec![("One?", "First.")]);
    }

    #[test]
    fn labelled_text() {
        let raw = "1. Question: What is the torque?\nAnswer: 45 Nm\nfor M12 bolts.\n2. Q: Who signs?\nA: The manager.";
        let p = parse_pairs(raw).unwrap();
        assert_eq!(qs(&p), vec![("What is the torque?", "45 Nm for M12 bolts."), ("Who signs?", "The manager.")]);
        let p = parse_pairs("Pregunta: ¿Dónde?\nRespuesta: En el archivo.").unwrap();
        assert_eq!(qs(&p), vec![("¿Dónde?", "En el archivo.")]);
    }

    #[test]
    fn garbage_is_a_failure_with_a_reason() {
        assert!(parse_pairs("").unwrap_err().0.contains("empty"));
        assert!(parse_pairs("I cannot do that.").unwrap_err().0.contains("no JSON"));
        assert!(parse_pairs("{\"pairs\": ]").is_err());
        let p = parse_pairs(r#"{"pairs":[{"question":"only"}]}"#).unwrap();
        assert!(p.pairs.is_empty());
        assert_eq!(p.incomplete.len(), 1);
    }
}
