//! PDF text extraction on lopdf.
//!
//! lopdf parses the file (and decrypts it when the empty user password opens it); the
//! text comes from our own walk over each page's content streams (`content`): fonts are
//! decoded through their ToUnicode maps and encodings (`font`, `cmap`), glyphs are
//! placed with the text and graphics matrices (form XObjects, `/ActualText`, form-field
//! annotations included), and `layout` rebuilds lines and paragraphs from those positions.
//! Running headers, footers and page numbers are removed (`furniture`), and the outline
//! (bookmarks) gives heading sections (`outline`). Pages are joined by a blank line; the
//! document keeps each page's byte range so chunks know their pages.

mod cmap;
mod content;
mod font;
mod furniture;
mod layout;
mod obj;
mod outline;
mod tables;

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use docraft_core::{DocFormat, Document, Span};
use lopdf::Object;

use crate::error::{Error, sniff};

use content::{Interpreter, MAX_CONTENT, Matrix, Resources};

/// Separator between pages in [`Document::text`] (a paragraph break)...
pub const PAGE_SEPARATOR: &str = "\n\n";

/// ... unless the page ends mid-sentence and the next goes on with it (a lower-case word
/// after a word or a comma): then a line break, so that chunking, which prefers paragraph
/// breaks, keeps the sentence whole in a chunk of both pages.
pub const CONTINUED_PAGE_SEPARATOR: &str = "\n";

/// The separator between a page ending with `before` and the next starting with `after`.
fn page_separator(before: &str, after: &str) -> &'static str {
    if docraft_core::text::continues(before, after) { CONTINUED_PAGE_SEPARATOR } else { PAGE_SEPARATOR }
}

/// How PDFs are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PdfOptions {
    /// Remove running headers, footers and page numbers (default: yes).
    pub strip_furniture: bool,
    /// Take the text of form fields and free-text notes from their annotations (default: yes).
    pub annotations: bool,
}

impl Default for PdfOptions {
    fn default() -> Self {
        Self { strip_furniture: true, annotations: true }
    }
}

/// Loads a PDF from its bytes with the default [`PdfOptions`]. `path` names it in errors and
/// in the document.
///
/// # Errors
/// As [`load_pdf_with`].
pub fn load_pdf(path: &Path, bytes: &[u8]) -> Result<Document, Error> {
    load_pdf_with(path, bytes, &PdfOptions::default())
}

/// Loads a PDF from its bytes. `path` names it in errors and in the document.
///
/// # Errors
/// [`Error::Empty`], [`Error::NotPdf`], [`Error::Encrypted`] (a password is needed),
/// [`Error::Damaged`] (the file cannot be parsed), [`Error::NoText`] (no page has a text
/// layer). Pages without text in an otherwise readable file become warnings.
pub fn load_pdf_with(path: &Path, bytes: &[u8], opts: &PdfOptions) -> Result<Document, Error> {
    if bytes.is_empty() {
        return Err(Error::Empty { path: path.to_path_buf() });
    }
    let head = bytes.get(..bytes.len().min(1024)).unwrap_or_default();
    if !head.windows(5).any(|w| w == b"%PDF-") {
        return Err(Error::NotPdf { path: path.to_path_buf(), looks_like: sniff(bytes).to_string() });
    }
    // lopdf is lenient and well fuzzed, but a damaged file must never take the run down.
    let loaded = std::panic::catch_unwind(|| lopdf::Document::load_mem(bytes));
    let pdf = match loaded {
        Ok(Ok(doc)) => doc,
        Ok(Err(lopdf::Error::InvalidPassword)) => {
            return Err(Error::Encrypted { path: path.to_path_buf() });
        }
        Ok(Err(e)) => {
            return Err(Error::Damaged { path: path.to_path_buf(), reason: describe_lopdf_error(&e, bytes) });
        }
        Err(_) => {
            return Err(Error::Damaged { path: path.to_path_buf(), reason: "the PDF parser failed on it".into() });
        }
    };
    // lopdf loads a file it cannot decrypt without complaint; nothing in it is readable.
    if pdf.trailer.has(b"Encrypt") && pdf.encryption_state.is_none() {
        return Err(Error::Encrypted { path: path.to_path_buf() });
    }
    let extracted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| extract(&pdf, opts)));
    let mut pages = match extracted {
        Ok(p) => p,
        Err(_) => {
            return Err(Error::Damaged {
                path: path.to_path_buf(),
                reason: "text extraction failed on its content streams".into(),
            });
        }
    };
    if pages.is_empty() {
        return Err(Error::Damaged { path: path.to_path_buf(), reason: "it has no pages".into() });
    }

    if pages.iter().all(|p| p.text.is_empty()) {
        return Err(Error::NoText {
            path: path.to_path_buf(),
            pages: pages.len(),
            images: pages.iter().any(|p| p.images > 0),
        });
    }
    let mut texts: Vec<String> = pages.iter_mut().map(|p| std::mem::take(&mut p.text)).collect();
    if opts.strip_furniture {
        furniture::strip(&mut texts);
    }

    let mut text = String::new();
    let mut spans = Vec::with_capacity(pages.len());
    let mut warnings = Vec::new();
    let mut image_only = Vec::new();
    for (i, p) in pages.iter().enumerate() {
        if i > 0 {
            text.push_str(page_separator(&texts[i - 1], &texts[i]));
        }
        let start = text.len();
        text.push_str(&texts[i]);
        spans.push(Span::new(start, text.len()));
        if texts[i].is_empty() && p.images > 0 {
            image_only.push(i + 1);
        }
        if p.unmapped > 0 {
            warnings.push(format!(
                "page {}: {} glyphs have no Unicode mapping in their font and were dropped",
                i + 1,
                p.unmapped
            ));
        }
    }
    if !image_only.is_empty() {
        warnings.insert(
            0,
            format!(
                "{} page(s) have images but no text layer (scanned?), no text taken from them: {}",
                image_only.len(),
                list_pages(&image_only)
            ),
        );
    }
    let mut doc = Document::new(path.to_string_lossy(), DocFormat::Pdf, bytes, text);
    doc.sections = outline::sections(&outline::entries(&pdf), &doc.text, &spans);
    doc.pages = spans;
    doc.warnings = warnings;
    info_metadata(&pdf, &mut doc);
    Ok(doc)
}

fn list_pages(pages: &[usize]) -> String {
    let shown: Vec<String> = pages.iter().take(20).map(ToString::to_string).collect();
    let more = if pages.len() > 20 { format!(" and {} more", pages.len() - 20) } else { String::new() };
    format!("{}{more}", shown.join(", "))
}

fn describe_lopdf_error(e: &lopdf::Error, bytes: &[u8]) -> String {
    let tail = bytes.get(bytes.len().saturating_sub(1024)..).unwrap_or_default();
    let truncated = !tail.windows(5).any(|w| w == b"%%EOF");
    let base = match e {
        lopdf::Error::Decryption(d) => format!("cannot decrypt it ({d})"),
        other => other.to_string(),
    };
    if truncated { format!("{base} (the file looks truncated: no %%EOF at its end)") } else { base }
}

/// Text and counts of one page.
struct PageOut {
    text: String,
    images: usize,
    unmapped: usize,
}

fn extract(pdf: &lopdf::Document, opts: &PdfOptions) -> Vec<PageOut> {
    let mut fonts = HashMap::<lopdf::ObjectId, Rc<font::Font>>::new();
    let mut out = Vec::new();
    let acroform_dr =
        pdf.catalog().ok().and_then(|c| obj::get_dict(pdf, c, b"AcroForm")).and_then(|f| obj::get_dict(pdf, f, b"DR"));
    for (_, page_id) in pdf.get_pages() {
        let content = pdf.get_page_content_with_limit(page_id, MAX_CONTENT).unwrap_or_default();
        let mut res: Resources<'_> = Vec::new();
        if let Ok((own, inherited)) = pdf.get_page_resources(page_id) {
            res.extend(own);
            res.extend(inherited.iter().filter_map(|id| pdf.get_dictionary(*id).ok()));
        }
        let mut interp = Interpreter::new(pdf, &mut fonts);
        interp.run(&content, &res, Matrix::IDENTITY);
        if opts.annotations {
            // Form fields may take their fonts from the form's default resources.
            let mut ann_res = res.clone();
            ann_res.extend(acroform_dr);
            for annot in pdf.get_page_annotations(page_id).unwrap_or_default() {
                interp.annotation(annot, &ann_res);
            }
        }
        let glyphs = interp.finish();
        out.push(PageOut { text: layout::page_text(&glyphs), images: glyphs.images, unmapped: glyphs.unmapped });
    }
    out
}

/// Decodes a PDF text string (UTF-16BE with BOM, UTF-8 with BOM, or PDFDocEncoding).
pub(crate) fn text_string(bytes: &[u8]) -> String {
    if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        return String::from_utf16_lossy(&obj::utf16_be(rest));
    }
    if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return String::from_utf8_lossy(rest).into_owned();
    }
    bytes
        .iter()
        .filter_map(|&b| {
            let unit = tables::PDF_DOC_ENCODING.get(usize::from(b)).copied().filter(|&u| u != 0)?;
            char::decode_utf16([unit]).next()?.ok()
        })
        .collect()
}

fn info_metadata(pdf: &lopdf::Document, doc: &mut Document) {
    let Some(info) = obj::get_dict(pdf, &pdf.trailer, b"Info") else { return };
    for (key, field) in [
        (&b"Title"[..], "title"),
        (b"Author", "author"),
        (b"Subject", "subject"),
        (b"Keywords", "keywords"),
        (b"Creator", "creator"),
        (b"Producer", "producer"),
    ] {
        let value = match obj::get(pdf, info, key) {
            Some(Object::String(s, _)) => Some(text_string(s)),
            _ => None,
        };
        let Some(value) = value.map(|v| v.trim().to_string()).filter(|v| !v.is_empty()) else {
            continue;
        };
        if field == "title" {
            doc.metadata.title = Some(value);
        } else {
            doc.metadata.fields.insert(field.to_string(), serde_json::Value::String(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sentence_going_on_over_a_page_break_is_not_a_paragraph_break() {
        // Mid-sentence: a word or a comma, then a lower-case word.
        assert_eq!(page_separator("Los documentos en papel de", "nivel confidencial"), "\n");
        assert_eq!(page_separator("the valve, ", "\n  which was replaced"), "\n");
        assert_eq!(page_separator("docu-", "mentos"), "\n");
        // Sentence or heading ends, capitals, numbers, empty pages: a paragraph break.
        assert_eq!(page_separator("It ends here.", "then more"), PAGE_SEPARATOR);
        assert_eq!(page_separator("Title", "Next section"), PAGE_SEPARATOR);
        assert_eq!(page_separator("see table", "3. Almacenamiento"), PAGE_SEPARATOR);
        assert_eq!(page_separator("", "text"), PAGE_SEPARATOR);
        assert_eq!(page_separator("text", ""), PAGE_SEPARATOR);
    }
}
