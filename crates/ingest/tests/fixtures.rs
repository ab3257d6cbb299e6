//! Every fixture document: extracted text snapshots, chunk invariants (spans rebuild the
//! text, chunks fit their capacity, pages and headings are right) and the facts each
//! fixture was made to check.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use docraft_core::{Chunk, DocFormat, Document};
use docraft_ingest::{AutoLoader, ChunkSettings, Chunker, Loader, Sizer, TextChunker};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn docs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(fixtures().join("docs")).expect("fixtures/docs").map(|e| e.expect("entry").path()).collect();
    v.sort();
    v
}

fn load(name: &str) -> Result<Document> {
    Ok(AutoLoader::new().load_path(&fixtures().join("docs").join(name))?)
}

/// Checks the document-level invariants: page spans ordered, in bounds, on char boundaries.
fn check_document(doc: &Document) -> Result<()> {
    let mut prev_end = 0;
    for (i, p) in doc.pages.iter().enumerate() {
        ensure!(p.start >= prev_end, "{}: page {} starts before the previous page ends", doc.source, i + 1);
        ensure!(doc.slice(*p).is_some(), "{}: page {} span {:?} is not a valid slice", doc.source, i + 1, p);
        prev_end = p.end;
    }
    let mut cursor = 0;
    for s in &doc.sections {
        ensure!(s.span.start == cursor, "{}: sections must tile the text", doc.source);
        cursor = s.span.end;
    }
    ensure!(doc.sections.is_empty() || cursor == doc.text.len(), "{}: sections stop early", doc.source);
    Ok(())
}

/// Checks every chunk against its document.
fn check_chunks(doc: &Document, chunks: &[Chunk], settings: &ChunkSettings) -> Result<()> {
    ensure!(!chunks.is_empty() || doc.text.trim().is_empty(), "{}: no chunks", doc.source);
    for (i, c) in chunks.iter().enumerate() {
        let name = format!("{} chunk {i}", doc.source);
        ensure!(doc.slice(c.span) == Some(c.text.as_str()), "{name}: span does not rebuild the text");
        let size = settings.sizer().size(&c.text);
        ensure!(size <= settings.max(), "{name}: size {size} over the capacity {}", settings.max());
        ensure!(c.doc_id == doc.id && c.source == doc.source, "{name}: wrong document");
        ensure!(c.chunk_index == i && c.chunk_count == chunks.len(), "{name}: wrong position");
        if doc.format == DocFormat::Pdf {
            let pages = c.pages.with_context(|| format!("{name}: PDF chunk without pages"))?;
            // Every page the range names must hold part of the chunk, and no other page may.
            for (n, p) in doc.pages.iter().enumerate() {
                let n = u32::try_from(n + 1)?;
                if p.is_empty() {
                    continue; // an image-only page may sit inside a range
                }
                let overlaps = p.start < c.span.end && c.span.start < p.end;
                ensure!(overlaps == pages.contains(n), "{name}: pages {pages:?} wrong for page {n} {p:?}");
            }
        } else {
            ensure!(c.pages.is_none(), "{name}: unpaged format with pages");
        }
        // The heading path is the one in force where the chunk starts: its last heading is
        // the nearest heading line at or before the chunk's start.
        if doc.format == DocFormat::Markdown {
            let before = &doc.text[..c.span.start.min(doc.text.len())];
            let nearest = doc
                .text
                .lines()
                .scan(0usize, |pos, line| {
                    let start = *pos;
                    *pos += line.len() + 1;
                    Some((start, line))
                })
                .filter(|(start, line)| *start <= before.len() && line.starts_with('#'))
                .last()
                .map(|(_, line)| line.trim_start_matches('#').trim().to_string());
            ensure!(
                c.headings.last() == nearest.as_ref(),
                "{name}: headings {:?} but nearest heading {nearest:?}",
                c.headings
            );
        }
    }
    ensure!(chunks.windows(2).all(|w| w[0].span.start < w[1].span.start), "{}: chunks out of order", doc.source);
    Ok(())
}

#[test]
fn every_fixture_satisfies_the_invariants() -> Result<()> {
    let configs = [
        ChunkSettings::new(800..=1200)?.with_overlap(100)?,
        ChunkSettings::new(150..=300)?.with_overlap(40)?,
        ChunkSettings::new(60)?,
    ];
    let files = docs();
    ensure!(files.len() >= 8, "expected the fixture set, found {files:?}");
    for path in files {
        let doc = AutoLoader::new().load_path(&path)?;
        check_document(&doc)?;
        for settings in &configs {
            let chunks = TextChunker::new(settings.clone()).chunk(&doc)?;
            check_chunks(&doc, &chunks, settings).with_context(|| settings.describe())?;
        }
    }
    Ok(())
}

#[test]
fn extracted_text_snapshots() -> Result<()> {
    for path in docs() {
        let doc = AutoLoader::new().load_path(&path)?;
        let name = path.file_name().and_then(|n| n.to_str()).context("name")?.replace('.', "_");
        let mut shown = String::new();
        if doc.pages.is_empty() {
            shown.push_str(&doc.text);
        } else {
            for (i, p) in doc.pages.iter().enumerate() {
                shown.push_str(&format!("=== page {} ===\n{}\n", i + 1, doc.slice(*p).unwrap_or_default()));
            }
        }
        insta::assert_snapshot!(name, shown);
    }
    Ok(())
}

#[test]
fn latex_pdf_pages_lines_hyphens_ligatures_accents() -> Result<()> {
    let doc = load("handbook-en.pdf")?;
    assert_eq!(doc.pages.len(), 4);
    assert_eq!(doc.metadata.language.as_deref(), Some("en"));
    let page1 = doc.slice(doc.pages[0]).unwrap_or_default();
    assert!(page1.starts_with("Northwind Field Service Handbook"), "{page1}");
    // Page numbers are page furniture, not text.
    assert!(doc.pages.iter().all(|p| { !doc.slice(*p).unwrap_or_default().ends_with(char::is_numeric) }));
    assert!(page1.contains("1 Purpose and scope\n\nThis handbook describes"), "headings are paragraphs of their own");
    // Lines are kept, paragraphs are separated by a blank line.
    assert!(doc.text.lines().count() > 80);
    assert!(doc.text.contains("\n\nQuestions about this document"));
    // Hyphenated line breaks are joined; real hyphens stay.
    for joined in ["automatically", "downstream", "configurations", "replacing"] {
        assert!(doc.text.contains(joined), "{joined} not joined");
    }
    assert!(doc.text.contains("well-documented") && doc.text.contains("NW-300"));
    assert!(!doc.text.contains("au-\ntomatically"));
    // Ligatures are expanded (NFKC), accents drawn as separate glyphs are composed.
    assert!(!doc.text.contains('\u{FB01}') && !doc.text.contains('\u{FB02}'));
    assert!(doc.text.contains("certificate") && doc.text.contains("flow") && doc.text.contains("office"));
    assert!(doc.text.contains("José Álvarez and Anna Müller"), "accents");
    // The table stays one row per line.
    assert!(doc.text.contains("Torque wrench, 5–25 Nm"));
    let row = doc.text.lines().find(|l| l.contains("Spare gasket set")).context("table row")?;
    assert!(row.contains("one per meter size"), "{row}");
    Ok(())
}

#[test]
fn libreoffice_pdf_in_spanish() -> Result<()> {
    let doc = load("politica-es.pdf")?;
    assert_eq!(doc.pages.len(), 2);
    assert_eq!(doc.metadata.language.as_deref(), Some("es"));
    assert_eq!(doc.metadata.fields.get("producer").and_then(|v| v.as_str()), Some("LibreOffice 7.4"));
    assert!(doc.text.starts_with("Política de tratamiento de\ndocumentos internos"));
    for s in [
        "¿Por qué es necesaria?",
        "Íñigo Muñoz",
        "¡Cualquier pérdida",
        "Restringido",
        "Dirección y Recursos",
        "setenta y dos horas",
    ] {
        assert!(doc.text.contains(s), "missing {s:?}");
    }
    let page2 = doc.slice(doc.pages[1]).unwrap_or_default();
    assert!(page2.contains("7. Revisión"));
    // Page 1 ends mid-sentence ("Los documentos en papel de" / "nivel confidencial ..."): the
    // pages are joined by a line break, not a paragraph break, and with the default settings
    // one chunk of pages 1-2 holds the whole sentence.
    assert!(doc.text.contains("Los documentos en papel de\nnivel confidencial"), "{}", doc.text);
    let chunks = TextChunker::new(ChunkSettings::default()).chunk(&doc)?;
    let whole = chunks
        .iter()
        .find(|c| c.text.contains("papel de\nnivel confidencial o restringido se guardan en armarios con llave"))
        .context("no chunk holds the sentence over the page break")?;
    assert_eq!(whole.pages.map(|p| (p.first, p.last)), Some((1, 2)));
    Ok(())
}

#[test]
fn ghostscript_and_encrypted_with_empty_password() -> Result<()> {
    let plain = load("bulletin-gs.pdf")?;
    let enc = load("bulletin-open-encrypted.pdf")?;
    assert!(plain.text.starts_with("Maintenance bulletin MB-2026-07\n\nSubject: replacement"));
    assert_eq!(plain.text, enc.text, "the empty user password opens the encrypted copy");
    assert_ne!(plain.id, enc.id, "different bytes, different document");
    Ok(())
}

#[test]
fn image_only_page_is_a_warning() -> Result<()> {
    let doc = load("mixed-scan.pdf")?;
    assert_eq!(doc.pages.len(), 2);
    assert!(doc.pages[1].is_empty());
    assert!(doc.slice(doc.pages[0]).unwrap_or_default().contains("pressure relief valve"));
    assert!(doc.warnings.iter().any(|w| w.contains("no text layer") && w.ends_with(": 2")), "{:?}", doc.warnings);
    Ok(())
}

#[test]
fn text_encodings() -> Result<()> {
    let latin1 = load("acta-latin1.txt")?;
    assert_eq!(latin1.metadata.fields.get("encoding").and_then(|v| v.as_str()), Some("windows-1252"));
    assert_eq!(latin1.metadata.language.as_deref(), Some("es"));
    assert!(latin1.text.starts_with("ACTA DE LA REUNIÓN DEL COMITÉ DE SEGURIDAD\n"));
    assert!(latin1.text.contains("Dña. Begoña Ibáñez"));
    let utf16 = load("memo-utf16.txt")?;
    assert_eq!(utf16.metadata.fields.get("encoding").and_then(|v| v.as_str()), Some("UTF-16LE"));
    assert!(utf16.text.starts_with("MEMO — Network maintenance window\n"));
    Ok(())
}

#[test]
fn markdown_front_matter_headings_tables_code() -> Result<()> {
    let doc = load("guia-es.md")?;
    assert_eq!(doc.metadata.title.as_deref(), Some("Guía rápida del servidor de documentos"));
    assert_eq!(doc.metadata.fields.get("author").and_then(|v| v.as_str()), Some("Equipo de Sistemas"));
    assert_eq!(doc.metadata.fields["tags"], serde_json::json!(["documentos", "copias de seguridad"]));
    assert_eq!(doc.metadata.language.as_deref(), Some("es"));
    assert!(!doc.text.contains("nota interna"), "HTML comments are stripped");
    assert!(!doc.text.contains("title:"), "front matter is not text");
    assert!(doc.text.contains("| `Producción` | Partes diarios, análisis | Jefes de turno |"));
    assert!(doc.text.contains("```bash\nls /mnt/copias/$(date +%F)/compartido\n```"));
    assert!(doc.text.contains("2. Abre la pestaña Versiones anteriores."));

    let chunks = TextChunker::new(ChunkSettings::new(120..=250)?).chunk(&doc)?;
    let restore = chunks.iter().find(|c| c.text.contains("Restaurar")).context("chunk")?;
    assert_eq!(restore.headings, ["Guía rápida del servidor de documentos", "Recuperar una versión anterior"]);
    let names = chunks.iter().find(|c| c.text.contains("ordenen solos")).context("chunk")?;
    assert_eq!(names.headings, ["Guía rápida del servidor de documentos", "Carpetas", "Nombres de archivo"]);
    assert_eq!(names.metadata.get("title").and_then(|v| v.as_str()), Some("Guía rápida del servidor de documentos"));

    let notes = load("release-notes.md")?;
    assert_eq!(notes.metadata.title.as_deref(), Some("Field App release notes"));
    assert_eq!(notes.metadata.fields.get("version").and_then(|v| v.as_str()), Some("3.4.0"));
    assert!(notes.text.contains("synchronised automatically when"), "inline HTML stripped");
    assert!(notes.text.contains("- Signatures made with a stylus"));
    assert!(notes.text.contains("  - This also affects reports"), "nested list kept");
    Ok(())
}

#[test]
fn token_chunking_clears_truncation_and_padding() -> Result<()> {
    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::pre_tokenizers::whitespace::Whitespace;
    use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

    let doc = load("handbook-en.pdf")?;
    // A word-level tokenizer over the document's own words, saved with truncation at 8 and
    // fixed padding to 8: as shipped, every text would measure 8 tokens.
    let mut vocab: Vec<String> = doc.text.split_whitespace().map(str::to_string).collect();
    vocab.sort();
    vocab.dedup();
    let mut map: std::collections::HashMap<String, u32> = vocab.into_iter().zip(2u32..).collect();
    map.insert("[UNK]".into(), 0);
    map.insert("[PAD]".into(), 1);
    let model = WordLevel::builder()
        .vocab(map.into_iter().collect())
        .unk_token("[UNK]".into())
        .build()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut tok = Tokenizer::new(model);
    tok.with_pre_tokenizer(Some(Whitespace {}));
    tok.with_truncation(Some(TruncationParams { max_length: 8, ..Default::default() }))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tok.with_padding(Some(PaddingParams { strategy: PaddingStrategy::Fixed(8), ..Default::default() }));
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("tokenizer.json");
    tok.save(&path, false).map_err(|e| anyhow::anyhow!("{e}"))?;

    let sizer = Sizer::tokens_from_file(&path)?;
    let settings = ChunkSettings::new(40..=60)?.with_overlap(5)?.with_sizer(sizer.clone());
    let chunks = TextChunker::new(settings.clone()).chunk(&doc)?;
    check_chunks(&doc, &chunks, &settings)?;
    let sizes: Vec<usize> = chunks.iter().map(|c| sizer.size(&c.text)).collect();
    assert!(sizes.iter().any(|&s| s > 30), "sizes stuck at the truncation length: {sizes:?}");
    assert!(chunks.len() > 10);

    let err = Sizer::tokens_from_file(dir.path().join("missing.json")).unwrap_err();
    assert!(err.to_string().contains("missing.json"), "{err}");
    Ok(())
}

/// The MiniLM tokenizer that setup fetches (the one the index will use), as a real-world check.
#[test]
#[ignore = "needs scripts/setup.sh"]
fn token_chunking_with_the_minilm_tokenizer() -> Result<()> {
    let path = docraft_core::models_dir().join("all-minilm-l6-v2/tokenizer.json");
    ensure!(path.exists(), "{} is missing: run scripts/setup.sh first", path.display());
    let sizer = Sizer::tokens_from_file(&path)?;
    let doc = load("politica-es.pdf")?;
    let settings = ChunkSettings::new(128..=256)?.with_overlap(16)?.with_sizer(sizer.clone());
    let chunks = TextChunker::new(settings.clone()).chunk(&doc)?;
    check_chunks(&doc, &chunks, &settings)?;
    // The shipped file truncates at 128: a chunk above that proves truncation was cleared.
    assert!(chunks.iter().any(|c| sizer.size(&c.text) > 128));
    Ok(())
}

#[test]
fn other_scripts_right_to_left_and_actual_text() -> Result<()> {
    let doc = load("multiscript.pdf")?;
    // Hebrew and Arabic come back in reading order, numbers inside them left to right.
    assert!(doc.text.contains("המונה מכויל פעם בשנה לפי נוהל 300."), "{}", doc.text);
    assert!(doc.text.contains("يتم معايرة العداد مرة كل سنة وفق الإجراء 300."), "{}", doc.text);
    assert!(doc.text.contains("Русский: счётчик калибруется каждый год."));
    assert!(doc.text.contains("Ελληνικά: ο μετρητής βαθμονομείται κάθε χρόνο."));
    // The Japanese glyphs are fallbacks; the text is in /ActualText.
    assert!(doc.text.contains("日本語:メーターは毎年校正されます。"), "{}", doc.text);
    Ok(())
}

#[test]
fn pdf_headings_come_from_the_outline() -> Result<()> {
    let doc = load("handbook-en.pdf")?;
    let heads: Vec<String> = doc.sections.iter().map(|s| s.headings.join(" / ")).collect();
    assert_eq!(
        heads,
        [
            "",
            "Purpose and scope",
            "Before a site visit",
            "Before a site visit / Scheduling",
            "Before a site visit / Equipment checklist",
            "Installation",
            "Calibration",
            "Maintenance intervals",
            "Safety",
            "Reporting"
        ]
    );
    // Each section starts at its numbered heading line.
    let kit = &doc.sections[4];
    assert!(doc.text[kit.span.range()].starts_with("2.2 Equipment checklist\n"));
    let chunks = TextChunker::new(ChunkSettings::new(200..=400)?).chunk(&doc)?;
    let torque = chunks.iter().find(|c| c.text.contains("Torque wrench")).context("chunk")?;
    assert_eq!(torque.headings, ["Before a site visit", "Equipment checklist"]);

    let es = load("politica-es.pdf")?;
    let chunks = TextChunker::new(ChunkSettings::new(200..=400)?).chunk(&es)?;
    let ai = chunks.iter().find(|c| c.text.contains("Íñigo Muñoz")).context("chunk")?;
    assert_eq!(ai.headings, ["4. Uso de herramientas de inteligencia artificial"]);
    Ok(())
}
