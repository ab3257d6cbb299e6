//! PDFs built here with lopdf, one feature each: standard fonts without widths, TJ word gaps,
//! `/ActualText`, form-field values without an appearance, fake-bold overprinting.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use anyhow::Result;
use docraft_ingest::pdf::load_pdf;
use lopdf::content::{Content, Operation};
use lopdf::{Document, Object, Stream, dictionary};

/// A one-page PDF (A4) with Helvetica as /F1, the given content operations and annotations.
fn build(ops: Vec<Operation>, annots: Vec<lopdf::Dictionary>) -> Result<Vec<u8>> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica", "Encoding" => "WinAnsiEncoding",
    });
    let resources_id = doc.add_object(dictionary! { "Font" => dictionary! { "F1" => font_id } });
    let content_id = doc.add_object(Stream::new(dictionary! {}, Content { operations: ops }.encode()?));
    let annot_ids: Vec<Object> = annots.into_iter().map(|a| Object::Reference(doc.add_object(a))).collect();
    let page_id = doc.add_object(dictionary! {
        "Type" => "Page", "Parent" => pages_id, "Contents" => content_id, "Annots" => annot_ids,
    });
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages", "Kids" => vec![page_id.into()], "Count" => 1,
            "Resources" => resources_id, "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog_id);
    let mut out = Vec::new();
    doc.save_to(&mut out)?;
    Ok(out)
}

fn text_at(x: i64, y: i64, s: &str) -> Vec<Operation> {
    vec![
        Operation::new("BT", vec![]),
        Operation::new("Tf", vec!["F1".into(), 12.into()]),
        Operation::new("Td", vec![x.into(), y.into()]),
        Operation::new("Tj", vec![Object::string_literal(s)]),
        Operation::new("ET", vec![]),
    ]
}

fn extract(bytes: &[u8]) -> Result<String> {
    Ok(load_pdf(Path::new("built.pdf"), bytes)?.text)
}

#[test]
fn lines_paragraphs_and_word_gaps_from_positions() -> Result<()> {
    let mut ops = text_at(72, 800, "First line of the");
    ops.extend(text_at(72, 786, "paragraph, no space between"));
    ops.extend(text_at(72, 750, "Second paragraph after a gap."));
    // Words placed by TJ offsets only, as LaTeX does.
    ops.extend(vec![
        Operation::new("BT", vec![]),
        Operation::new("Tf", vec!["F1".into(), 12.into()]),
        Operation::new("Td", vec![72.into(), 736.into()]),
        Operation::new(
            "TJ",
            vec![Object::Array(vec![
                Object::string_literal("spaced"),
                (-400).into(),
                Object::string_literal("by"),
                (-400).into(),
                Object::string_literal("kerning"),
                (-20).into(),
                Object::string_literal("ok"),
            ])],
        ),
        Operation::new("ET", vec![]),
    ]);
    let text = extract(&build(ops, vec![])?)?;
    assert_eq!(
        text,
        "First line of the\nparagraph, no space between\n\nSecond paragraph after a gap.\nspaced by kerningok"
    );
    Ok(())
}

#[test]
fn actual_text_replaces_the_glyphs_it_covers() -> Result<()> {
    let mut ops = vec![
        Operation::new("BT", vec![]),
        Operation::new("Tf", vec!["F1".into(), 12.into()]),
        Operation::new("Td", vec![72.into(), 800.into()]),
        Operation::new("Tj", vec![Object::string_literal("Price: ")]),
        Operation::new(
            "BDC",
            vec!["Span".into(), Object::Dictionary(dictionary! { "ActualText" => Object::string_literal("EUR") })],
        ),
        Operation::new("Tj", vec![Object::string_literal("###")]),
        Operation::new("EMC", vec![]),
        Operation::new("ET", vec![]),
    ];
    ops.extend(text_at(72, 780, "end"));
    let text = extract(&build(ops, vec![])?)?;
    assert_eq!(text, "Price: EUR\nend");
    Ok(())
}

#[test]
fn form_field_value_without_appearance() -> Result<()> {
    let ops = text_at(72, 800, "Name:");
    let field = dictionary! {
        "Type" => "Annot", "Subtype" => "Widget", "FT" => "Tx", "T" => Object::string_literal("name"),
        "V" => Object::string_literal("Alice Martin"),
        "Rect" => vec![140.into(), 796.into(), 300.into(), 814.into()],
    };
    let hidden = dictionary! {
        "Type" => "Annot", "Subtype" => "Widget", "FT" => "Tx", "F" => 2, "V" => Object::string_literal("secret"),
        "Rect" => vec![140.into(), 700.into(), 300.into(), 718.into()],
    };
    let text = extract(&build(ops, vec![field, hidden])?)?;
    // The field sits well right of its label: a column gap, written as a tab.
    assert_eq!(text, "Name:\tAlice Martin");
    Ok(())
}

#[test]
fn fake_bold_overprint_is_read_once() -> Result<()> {
    let mut ops = text_at(72, 800, "Bold");
    ops.extend(text_at(0, 0, "")); // an empty run in between changes nothing
    // The same word again, 0.4 pt to the right: a fake-bold second pass.
    ops.extend(vec![
        Operation::new("BT", vec![]),
        Operation::new("Tf", vec!["F1".into(), 12.into()]),
        Operation::new("Td", vec![Object::Real(72.4), 800.into()]),
        Operation::new("Tj", vec![Object::string_literal("Bold")]),
        Operation::new("ET", vec![]),
    ]);
    let text = extract(&build(ops, vec![])?)?;
    assert_eq!(text, "Bold");
    Ok(())
}

/// Damaged copies of real fixtures (bytes flipped, files cut short): every one gives a
/// document or a typed error, never a panic, and truncation is reported as damage.
#[test]
fn corrupted_and_truncated_pdfs_never_panic() -> Result<()> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/docs");
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15; // fixed seed: the same mutations every run
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for name in ["handbook-en.pdf", "politica-es.pdf", "bulletin-open-encrypted.pdf"] {
        let original = std::fs::read(fixtures.join(name))?;
        for round in 0..60 {
            let mut bytes = original.clone();
            if round % 3 == 0 {
                bytes.truncate((next() as usize) % bytes.len());
            } else {
                for _ in 0..(1 + next() % 16) {
                    let i = (next() as usize) % bytes.len();
                    bytes[i] = (next() & 0xff) as u8;
                }
            }
            let kind = match load_pdf(Path::new(name), &bytes) {
                Ok(_) => "ok".to_string(),
                Err(e) => {
                    assert!(e.to_string().contains(name), "the error names the file: {e}");
                    e.kind().to_string()
                }
            };
            *outcomes.entry(kind).or_default() += 1;
        }
    }
    let allowed = ["ok", "damaged", "no_text", "not_pdf", "empty", "encrypted"];
    assert!(outcomes.keys().all(|k| allowed.contains(&k.as_str())), "{outcomes:?}");
    assert!(outcomes.get("damaged").copied().unwrap_or(0) > 0, "{outcomes:?}");
    Ok(())
}
