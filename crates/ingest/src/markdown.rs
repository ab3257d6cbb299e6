//! Markdown: rendered to clean, readable Markdown-shaped text with the heading path of every
//! section.
//!
//! Headings keep their `#` marks, lists their bullets, code blocks their fences and tables
//! their pipes (so the text stays readable and Markdown-aware chunking still sees its
//! structure); emphasis marks, link targets and inline HTML are dropped; front matter
//! (YAML `---` or TOML `+++`) becomes metadata.

use std::path::Path;

use docraft_core::{DocFormat, Document, Section, Span};
use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, MetadataBlockKind, Options, Parser, Tag, TagEnd};

use crate::error::Error;
use crate::text::decode_text;

/// Loads a Markdown file from its bytes (any encoding [`decode_text`] reads).
///
/// # Errors
/// [`Error::Empty`] for a file with no bytes, [`Error::Binary`] for one that is not text.
/// Invalid front matter is a warning, not an error.
pub fn load_markdown(path: &Path, bytes: &[u8]) -> Result<Document, Error> {
    if bytes.is_empty() {
        return Err(Error::Empty { path: path.to_path_buf() });
    }
    let (source, encoding) = decode_text(path, bytes)?;
    let rendered = render(&source);
    let mut doc = Document::new(path.to_string_lossy(), DocFormat::Markdown, bytes, rendered.text);
    doc.sections = rendered.sections;
    if encoding != "UTF-8" {
        doc.metadata.fields.insert("encoding".into(), encoding.into());
    }
    if let Some((kind, raw)) = rendered.front_matter {
        match parse_front_matter(kind, &raw) {
            Ok(serde_json::Value::Object(map)) => {
                for (k, v) in map {
                    if k == "title"
                        && let Some(t) = v.as_str()
                    {
                        doc.metadata.title = Some(t.to_string());
                        continue;
                    }
                    doc.metadata.fields.insert(k, v);
                }
            }
            Ok(serde_json::Value::Null) => {}
            Ok(_) => doc.warnings.push("front matter is not a key/value map; ignored".into()),
            Err(e) => doc.warnings.push(format!("front matter ignored: {e}")),
        }
    }
    if doc.metadata.title.is_none() {
        doc.metadata.title = rendered.first_h1;
    }
    Ok(doc)
}

fn parse_front_matter(kind: MetadataBlockKind, raw: &str) -> Result<serde_json::Value, String> {
    match kind {
        MetadataBlockKind::YamlStyle => serde_yaml_ng::from_str::<serde_json::Value>(raw).map_err(|e| e.to_string()),
        MetadataBlockKind::PlusesStyle => toml::from_str::<serde_json::Value>(raw).map_err(|e| e.to_string()),
    }
}

/// The result of rendering Markdown.
#[derive(Debug, Default)]
pub(crate) struct Rendered {
    pub text: String,
    pub sections: Vec<Section>,
    pub front_matter: Option<(MetadataBlockKind, String)>,
    pub first_h1: Option<String>,
}

#[derive(Default)]
struct Renderer {
    out: String,
    /// Line prefix for the current nesting (block quotes, list item indentation).
    prefix: Vec<String>,
    lists: Vec<Option<u64>>,
    /// Heading being collected: (level, text, start offset in `out`).
    heading: Option<(usize, String, usize)>,
    /// Heading path: (level, text).
    path: Vec<(usize, String)>,
    /// Section starts: (offset, path).
    starts: Vec<(usize, Vec<String>)>,
    table: Option<Vec<Vec<String>>>,
    cell: Option<String>,
    in_code: bool,
    metadata: Option<(MetadataBlockKind, String)>,
    front_matter: Option<(MetadataBlockKind, String)>,
    first_h1: Option<String>,
    /// Inside an image: its alt text is kept, in brackets.
    image_depth: usize,
}

impl Renderer {
    fn prefix_str(&self) -> String {
        self.prefix.concat()
    }

    /// Ends the current line; the next one starts with the nesting prefix.
    fn newline(&mut self) {
        let p = self.prefix_str();
        self.out.push('\n');
        self.out.push_str(&p);
    }

    /// Starts a new block: a blank line after whatever came before.
    fn block(&mut self) {
        let trimmed = self.out.trim_end_matches([' ', '>']).len();
        if trimmed == 0 {
            self.out.clear();
            let p = self.prefix_str();
            self.out.push_str(&p);
            return;
        }
        // Remove a dangling prefix, then leave one blank (prefixed) line.
        self.out.truncate(self.out.trim_end().len());
        let p = self.prefix_str();
        let blank = p.trim_end().to_string();
        self.out.push('\n');
        self.out.push_str(&blank);
        self.out.push('\n');
        self.out.push_str(&p);
    }

    fn inline(&mut self, s: &str) {
        if let Some(cell) = self.cell.as_mut() {
            cell.push_str(&s.replace('\n', " ").replace('|', "\\|"));
            return;
        }
        if let Some((_, text, _)) = self.heading.as_mut() {
            text.push_str(s);
        }
        self.out.push_str(s);
    }

    fn event(&mut self, ev: Event<'_>) {
        if let Some((_, raw)) = self.metadata.as_mut() {
            match ev {
                Event::Text(t) => raw.push_str(&t),
                Event::End(TagEnd::MetadataBlock(_)) => self.front_matter = self.metadata.take(),
                _ => {}
            }
            return;
        }
        match ev {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(t) => {
                if self.in_code {
                    let p = self.prefix_str();
                    for (i, line) in t.split('\n').enumerate() {
                        if i > 0 {
                            self.out.push('\n');
                            if !line.is_empty() {
                                self.out.push_str(&p);
                            }
                        }
                        self.out.push_str(line);
                    }
                } else {
                    self.inline(&t);
                }
            }
            Event::Code(c) => {
                let s = format!("`{c}`");
                self.inline(&s);
            }
            Event::InlineMath(m) => {
                let s = format!("${m}$");
                self.inline(&s);
            }
            Event::DisplayMath(m) => {
                let s = format!("$${m}$$");
                self.inline(&s);
            }
            Event::Html(h) => {
                let text = strip_html(&h);
                if !text.trim().is_empty() {
                    self.inline(text.trim());
                    self.inline(" ");
                }
            }
            Event::InlineHtml(_) => {}
            Event::FootnoteReference(r) => {
                let s = format!("[^{r}]");
                self.inline(&s);
            }
            Event::SoftBreak => {
                if self.cell.is_some() || self.heading.is_some() {
                    self.inline(" ");
                } else {
                    self.newline();
                }
            }
            Event::HardBreak => {
                if self.cell.is_some() {
                    self.inline(" ");
                } else {
                    self.newline();
                }
            }
            Event::Rule => {
                self.block();
                self.out.push_str("---");
            }
            Event::TaskListMarker(done) => self.inline(if done { "[x] " } else { "[ ] " }),
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::MetadataBlock(kind) => self.metadata = Some((kind, String::new())),
            Tag::Paragraph => {
                // The first paragraph of a list item goes right after its bullet.
                if !self.out.ends_with("- ") && !self.out.ends_with(". ") {
                    self.block();
                }
            }
            Tag::Heading { level, .. } => {
                self.block();
                let n = heading_level(level);
                let start = self.out.len();
                self.out.push_str(&"#".repeat(n));
                self.out.push(' ');
                self.heading = Some((n, String::new(), start));
            }
            Tag::BlockQuote(_) => {
                self.block();
                self.prefix.push("> ".into());
                self.out.push_str("> ");
            }
            Tag::CodeBlock(kind) => {
                self.block();
                self.out.push_str("```");
                if let CodeBlockKind::Fenced(lang) = kind {
                    self.out.push_str(lang.split_whitespace().next().unwrap_or(""));
                }
                self.newline();
                self.in_code = true;
            }
            Tag::HtmlBlock => self.block(),
            Tag::List(start) => {
                if self.lists.is_empty() {
                    self.block();
                }
                self.lists.push(start);
            }
            Tag::Item => {
                let marker = match self.lists.last_mut() {
                    Some(Some(n)) => {
                        let m = format!("{n}. ");
                        *n += 1;
                        m
                    }
                    _ => "- ".to_string(),
                };
                let head = self.out.trim_end_matches([' ', '>']);
                if head.is_empty() || head.ends_with('\n') {
                    // Already at the start of a line: just the prefix.
                    let keep = head.len();
                    self.out.truncate(keep);
                    let p = self.prefix_str();
                    self.out.push_str(&p);
                } else {
                    self.out.truncate(self.out.trim_end().len());
                    self.newline();
                }
                self.out.push_str(&marker);
                self.prefix.push(" ".repeat(marker.len()));
            }
            Tag::Table(_) => {
                self.block();
                self.table = Some(Vec::new());
            }
            Tag::TableHead | Tag::TableRow => {
                if let Some(t) = self.table.as_mut() {
                    t.push(Vec::new());
                }
            }
            Tag::TableCell => self.cell = Some(String::new()),
            Tag::Image { .. } => {
                self.image_depth += 1;
                self.inline("[");
            }
            Tag::FootnoteDefinition(label) => {
                self.block();
                let s = format!("[^{label}]: ");
                self.out.push_str(&s);
            }
            Tag::DefinitionList | Tag::DefinitionListTitle | Tag::DefinitionListDefinition => self.block(),
            Tag::Emphasis | Tag::Strong | Tag::Strikethrough | Tag::Superscript | Tag::Subscript | Tag::Link { .. } => {
            }
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Heading(_) => {
                if let Some((level, text, start)) = self.heading.take() {
                    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                    if level == 1 && self.first_h1.is_none() && !text.is_empty() {
                        self.first_h1 = Some(text.clone());
                    }
                    while self.path.last().is_some_and(|(l, _)| *l >= level) {
                        self.path.pop();
                    }
                    self.path.push((level, text));
                    self.starts.push((start, self.path.iter().map(|(_, t)| t.clone()).collect()));
                }
            }
            TagEnd::BlockQuote(_) => {
                self.prefix.pop();
            }
            TagEnd::CodeBlock => {
                self.in_code = false;
                if !self.out.ends_with('\n') {
                    self.out.push('\n');
                }
                let p = self.prefix_str();
                self.out.push_str(&p);
                self.out.push_str("```");
            }
            TagEnd::List(_) => {
                self.lists.pop();
            }
            TagEnd::Item => {
                self.prefix.pop();
            }
            TagEnd::TableCell => {
                if let (Some(cell), Some(row)) = (self.cell.take(), self.table.as_mut().and_then(|t| t.last_mut())) {
                    row.push(cell.trim().to_string());
                }
            }
            TagEnd::Table => {
                if let Some(rows) = self.table.take() {
                    let p = self.prefix_str();
                    for (i, row) in rows.iter().enumerate() {
                        if i > 0 {
                            self.out.push('\n');
                            self.out.push_str(&p);
                        }
                        self.out.push_str("| ");
                        self.out.push_str(&row.join(" | "));
                        self.out.push_str(" |");
                        if i == 0 {
                            self.out.push('\n');
                            self.out.push_str(&p);
                            self.out.push('|');
                            self.out.push_str(&" --- |".repeat(row.len().max(1)));
                        }
                    }
                }
            }
            TagEnd::Image => {
                self.image_depth = self.image_depth.saturating_sub(1);
                self.inline("]");
            }
            _ => {}
        }
    }
}

fn heading_level(l: HeadingLevel) -> usize {
    match l {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}

/// Drops tags, comments and the content of `<script>`/`<style>` from an HTML fragment.
fn strip_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        out.push_str(rest.get(..lt).unwrap_or_default());
        let after = rest.get(lt..).unwrap_or_default();
        let lower = after.get(..after.len().min(8)).unwrap_or_default().to_ascii_lowercase();
        let skip_to = if after.starts_with("<!--") {
            after.find("-->").map(|i| i + 3)
        } else if lower.starts_with("<script") || lower.starts_with("<style") {
            let close = if lower.starts_with("<script") { "</script>" } else { "</style>" };
            after.to_ascii_lowercase().find(close).map(|i| i + close.len())
        } else {
            after.find('>').map(|i| i + 1)
        };
        match skip_to {
            Some(n) => rest = after.get(n..).unwrap_or_default(),
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Renders Markdown source.
pub(crate) fn render(source: &str) -> Rendered {
    let opts = Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_YAML_STYLE_METADATA_BLOCKS
        | Options::ENABLE_PLUSES_DELIMITED_METADATA_BLOCKS;
    let mut r = Renderer::default();
    for ev in Parser::new_ext(source, opts) {
        r.event(ev);
    }
    let text = r.out.trim_end().to_string();
    // Leading whitespace only comes from a prefix on an empty document.
    let lead = text.len() - text.trim_start().len();
    let text = text.trim_start().to_string();
    let mut sections = Vec::new();
    let mut cursor = 0;
    let mut path: Vec<String> = Vec::new();
    for (start, p) in r.starts {
        let start = start.saturating_sub(lead).min(text.len());
        if start > cursor {
            sections.push(Section { span: Span::new(cursor, start), headings: path.clone() });
        }
        cursor = start;
        path = p;
    }
    if text.len() > cursor || sections.is_empty() {
        sections.push(Section { span: Span::new(cursor, text.len()), headings: path });
    }
    Rendered { text, sections, front_matter: r.front_matter, first_h1: r.first_h1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_structure_and_sections() {
        let md = "---\ntitle: Guía\nlang: es\n---\n# Guía\n\nIntro *text* with a [link](http://x).\n\n## Instalar\n\n- uno\n- dos\n\n```sh\ncargo build\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n<span>inline</span> html <b>bold</b>\n";
        let r = render(md);
        assert_eq!(
            r.text,
            "# Guía\n\nIntro text with a link.\n\n## Instalar\n\n- uno\n- dos\n\n```sh\ncargo build\n```\n\n| a | b |\n| --- | --- |\n| 1 | 2 |\n\ninline html bold"
        );
        let (kind, raw) = r.front_matter.unwrap();
        assert_eq!(kind, MetadataBlockKind::YamlStyle);
        assert!(raw.contains("lang: es"));
        assert_eq!(r.sections.len(), 2);
        assert_eq!(r.sections[0].headings, ["Guía"]);
        assert_eq!(r.sections[1].headings, ["Guía", "Instalar"]);
        assert_eq!(&r.text[r.sections[1].span.range()][..11], "## Instalar");
        assert_eq!(r.sections[1].span.end, r.text.len());
    }

    #[test]
    fn strips_html() {
        assert_eq!(strip_html("<div>a <!-- c --> b<script>x</script></div>"), "a  b");
    }
}
