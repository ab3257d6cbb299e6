//! One renderer for every prompt file: `{{name}}` placeholders filled in a single pass.
//!
//! The template is scanned once, left to right; each `{{name}}` is replaced by its value and
//! the value is never scanned again. So a chunk, a question or a model's earlier answer that
//! happens to contain `{{question}}`, `{text}` or `{"pairs": ...}` comes out verbatim, whatever
//! order the variables are given in.
//!
//! A placeholder is `{{`, a name of ASCII letters, digits and `_`, and `}}`, with no spaces.
//! Anything else, single braces included (the JSON examples in the prompts), is literal text.
//! A placeholder without a value is an error naming the template and the variable; values
//! the template does not use are ignored (a language's template may not name the language).
//!
//! ```
//! use docraft_core::prompt::render;
//!
//! let out = render("demo", "Q: {{question}}\nC: {{context}}", &[
//!     ("question", "Why {{context}}?"),
//!     ("context", "text"),
//! ])?;
//! assert_eq!(out, "Q: Why {{context}}?\nC: text");
//! # Ok::<(), docraft_core::prompt::PromptError>(())
//! ```

/// Why a template could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PromptError {
    /// The template names a variable no value was given for.
    #[error("prompt template {template}: no value for `{{{{{variable}}}}}`")]
    MissingVariable {
        /// The template's name (its file).
        template: String,
        /// The variable.
        variable: String,
    },
}

/// Renders `template` (named `name` in errors) with `vars`, `(name, value)` pairs.
///
/// # Errors
/// [`PromptError::MissingVariable`] for the first placeholder without a value.
pub fn render(name: &str, template: &str, vars: &[(&str, &str)]) -> Result<String, PromptError> {
    let mut out = String::with_capacity(template.len() + vars.iter().map(|v| v.1.len()).sum::<usize>());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let (before, from_open) = rest.split_at(open);
        out.push_str(before);
        match placeholder(from_open) {
            Some((var, len)) => {
                let value = vars.iter().find(|(k, _)| *k == var).map(|(_, v)| *v).ok_or_else(|| {
                    PromptError::MissingVariable { template: name.to_string(), variable: var.to_string() }
                })?;
                out.push_str(value);
                rest = &from_open[len..];
            }
            None => {
                // Not a placeholder: keep one brace and look again from the next one, so
                // `{{{name}}}` still finds `{{name}}`.
                out.push('{');
                rest = &from_open[1..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The variables `template` names, in order of first use.
#[must_use]
pub fn variables(template: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let from_open = &rest[open..];
        match placeholder(from_open) {
            Some((var, len)) => {
                if !out.contains(&var) {
                    out.push(var);
                }
                rest = &from_open[len..];
            }
            None => rest = &from_open[1..],
        }
    }
    out
}

/// `{{name}}` at the start of `s`: the name and the placeholder's length in bytes.
fn placeholder(s: &str) -> Option<(&str, usize)> {
    let body = s.strip_prefix("{{")?;
    let end = body.find("}}")?;
    let name = &body[..end];
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    valid.then_some((name, end + 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_every_placeholder_once() -> Result<(), PromptError> {
        let t = "Passage from {{source}}{{headings}}:\n{{text}}\nWrite {{n}} ({{n}}) in {{language}}.";
        let out = render(
            "qa",
            t,
            &[("source", "a.pdf"), ("headings", ", section \"B\""), ("n", "3"), ("language", "English"), ("text", "T")],
        )?;
        assert_eq!(out, "Passage from a.pdf, section \"B\":\nT\nWrite 3 (3) in English.");
        assert_eq!(variables(t), vec!["source", "headings", "text", "n", "language"]);
        Ok(())
    }

    #[test]
    fn values_are_never_substituted_again() -> Result<(), PromptError> {
        // Every placeholder syntax the prompt files have used: `{{name}}` and `{name}`, and
        // the JSON examples' single braces.
        let hostile = "{{question}} {{context}} {{text}} {question} {sources} {\"pairs\": []} {{ x }} {{}}";
        for order in [[("question", hostile), ("context", "C")], [("context", "C"), ("question", hostile)]] {
            let out = render("cot", "Q: {{question}}\nC: {{context}}", &order)?;
            assert_eq!(out, format!("Q: {hostile}\nC: C"));
        }
        let out = render("ctx", "{{context}}|{{question}}", &[("context", "{{question}}"), ("question", "q")])?;
        assert_eq!(out, "{{question}}|q");
        Ok(())
    }

    #[test]
    fn non_placeholders_stay_literal() -> Result<(), PromptError> {
        let t = "Reply with JSON only: {\"pairs\": [{\"question\": \"...\"}]} {{ spaced }} {{}} {{a-b}} {{open";
        assert_eq!(render("t", t, &[])?, t);
        assert!(variables(t).is_empty());
        assert_eq!(render("t", "{{{x}}}", &[("x", "v")])?, "{v}");
        assert_eq!(render("t", "", &[])?, "");
        assert_eq!(render("t", "ñandú {{x}} ü", &[("x", "é")])?, "ñandú é ü");
        Ok(())
    }

    #[test]
    fn a_missing_variable_names_template_and_variable() {
        let err = render("qa.user.en.txt", "{{text}} {{n}}", &[("text", "t")]).unwrap_err();
        assert_eq!(err, PromptError::MissingVariable { template: "qa.user.en.txt".into(), variable: "n".into() });
        let msg = err.to_string();
        assert!(msg.contains("qa.user.en.txt") && msg.contains("{{n}}"), "{msg}");
    }
}
