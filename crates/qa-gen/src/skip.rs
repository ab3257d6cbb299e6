//! Chunks not worth asking about: tables of contents and indexes, license and copyright
//! boilerplate, navigation (menus, breadcrumbs, link lists). A model asked for questions about
//! them writes "What is described in this text?"; a run skips them before generation, counts
//! them under their [`Reason`] and records each in the rejected file.
//!
//! The checks look at the chunk's lines, English and Spanish alike:
//!
//! - **toc**: lines ending in dot leaders and a page number (`Objeto ........ 3`); lines
//!   ending in a page number whose numbers rise through the chunk (a table of contents without
//!   leaders; a table whose last column is a quantity does not rise); a title such as
//!   "Contents", "Table of contents", "Índice", "Sumario" with entries below it; index lines
//!   (`calibración, 12, 45–47`).
//! - **boilerplate**: copyright and license phrases, weighted ("©", "All rights reserved",
//!   "Todos los derechos reservados", "Permission is hereby granted", "GNU General Public
//!   License", "queda prohibida la reproducción" count more than "license" or "ISBN"): a
//!   chunk with a strong phrase and enough weight.
//! - **navigation**: lines that are only links, breadcrumbs (`Home > Products > Meters`),
//!   menu words ("Skip to content", "Inicio", "Contacto"), or very short items, with little
//!   prose.
//!
//! Each needs the chunk to be mostly that: prose (lines that read as sentences) protects a
//! chunk, so a paragraph with a short list, a table or a copyright footer is kept.
//!
//! ```
//! use docraft_qa_gen::Reason;
//! use docraft_qa_gen::skip::classify;
//!
//! let toc = "Índice\n1. Objeto ........ 3\n2. Clasificación ........ 4\n3. Almacenamiento ........ 6";
//! assert_eq!(classify(toc, &[]).map(|s| s.reason), Some(Reason::Toc));
//! let prose = "Las copias de seguridad se hacen cada noche y se conservan treinta días.";
//! assert_eq!(classify(prose, &[]), None);
//! ```

use docraft_core::text::{contains_phrase, word_line, words};

use crate::filter::Reason;

/// Why a chunk is skipped: its [`Reason`] (`toc`, `boilerplate` or `navigation`) and what was
/// seen, for the rejected record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    /// [`Reason::Toc`], [`Reason::Boilerplate`] or [`Reason::Navigation`].
    pub reason: Reason,
    /// What the chunk showed, e.g. "9 of 11 lines end in dot leaders and a page number".
    pub detail: String,
}

/// Titles of a table of contents or an index (as [`words`]).
const TOC_TITLES: &[&str] = &[
    "contents",
    "table of contents",
    "contents page",
    "index",
    "list of figures",
    "list of tables",
    "indice",
    "indice general",
    "indice de contenidos",
    "indice de contenido",
    "indice alfabetico",
    "indice analitico",
    "indice tematico",
    "indice de figuras",
    "indice de tablas",
    "tabla de contenidos",
    "tabla de contenido",
    "contenido",
    "contenidos",
    "sumario",
];

/// Copyright and license phrases that are boilerplate by themselves (weight 2).
const STRONG: &[&str] = &[
    "all rights reserved",
    "todos los derechos reservados",
    "reservados todos los derechos",
    "permission is hereby granted",
    "gnu general public license",
    "gnu lesser general public license",
    "gnu affero general public license",
    "gnu free documentation license",
    "licencia publica general",
    "apache license",
    "mit license",
    "bsd license",
    "creative commons",
    "licensed under the",
    "under the terms of the",
    "bajo los terminos de la",
    "without warranty of any kind",
    "sin garantia de ningun tipo",
    "provided as is",
    "se proporciona tal cual",
    "this program is free software",
    "este programa es software libre",
    "redistribution and use in source and binary forms",
    "no part of this publication may be reproduced",
    "no part of this book may be reproduced",
    "ninguna parte de esta publicacion",
    "queda prohibida la reproduccion",
    "prohibida la reproduccion total o parcial",
    "queda rigurosamente prohibida",
    "without the prior written permission",
    "sin la autorizacion previa",
    "sin autorizacion escrita",
    "registered trademark",
    "registered trademarks",
    "marca registrada",
    "marcas registradas",
    "deposito legal",
];

/// Words that lean towards boilerplate (weight 1 each, counted once).
const WEAK: &[&str] = &[
    "copyright",
    "license",
    "licence",
    "licensed",
    "licencia",
    "isbn",
    "issn",
    "nipo",
    "printed in",
    "impreso en",
    "published by",
    "publicado por",
    "editorial",
    "edition",
    "edicion",
    "trademark",
    "trademarks",
    "warranty",
    "garantia",
    "liability",
    "reproduction",
    "reproduccion",
    "permission",
    "autorizacion",
];

/// Whole lines that are navigation (as [`words`]).
const NAV_LINES: &[&str] = &[
    "skip to content",
    "skip to main content",
    "skip navigation",
    "jump to navigation",
    "saltar al contenido",
    "saltar al contenido principal",
    "ir al contenido",
    "ir al contenido principal",
    "main menu",
    "menu",
    "menu principal",
    "navigation",
    "navegacion",
    "you are here",
    "usted esta aqui",
    "esta usted en",
    "back to top",
    "volver arriba",
    "ir arriba",
    "home",
    "inicio",
    "sitemap",
    "site map",
    "mapa del sitio",
    "next",
    "previous",
    "next page",
    "previous page",
    "siguiente",
    "anterior",
    "pagina siguiente",
    "pagina anterior",
    "search",
    "buscar",
    "log in",
    "login",
    "sign in",
    "sign up",
    "register",
    "iniciar sesion",
    "registrarse",
    "share",
    "compartir",
    "print",
    "imprimir",
    "contact",
    "contact us",
    "contacto",
    "contactar",
    "about",
    "about us",
    "quienes somos",
    "privacy policy",
    "politica de privacidad",
    "cookie policy",
    "politica de cookies",
    "terms of use",
    "terms and conditions",
    "aviso legal",
    "terminos y condiciones",
    "accessibility",
    "accesibilidad",
    "follow us",
    "siguenos",
    "faq",
    "help",
    "ayuda",
    "blog",
    "news",
    "noticias",
];

/// Separators of a breadcrumb or a one-line menu.
const CRUMB_SEPARATORS: &[&str] = &[" > ", " » ", " › ", " / ", " | ", " · ", " → ", " >> "];

/// Months, English and Spanish: "March 2026" ends in a number but is a date, not a page.
const MONTHS: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "enero",
    "febrero",
    "marzo",
    "abril",
    "mayo",
    "junio",
    "julio",
    "agosto",
    "septiembre",
    "setiembre",
    "octubre",
    "noviembre",
    "diciembre",
];

/// Words a number after them labels ("Step 3", "Tabla 2", "versión 4"): not a page.
const LABELS: &[&str] = &[
    "page", "pagina", "p", "pag", "no", "num", "n", "version", "v", "step", "paso", "phase", "fase", "part", "parte",
    "chapter", "capitulo", "section", "seccion", "article", "articulo", "item", "table", "tabla", "figure", "figura",
    "fig", "room", "sala", "line", "linea", "level", "nivel", "revision", "rev", "model", "modelo",
];

/// One non-empty line and what it looks like.
#[derive(Debug, Default)]
struct Line {
    chars: usize,
    /// Ends in dot leaders and a page number.
    leader: bool,
    /// Ends in a page number (with or without leaders): the number.
    page: Option<u32>,
    /// `term, 12, 45–47`.
    index: bool,
    /// Only links (markdown links, URLs), or a breadcrumb, or a navigation word.
    nav: bool,
    /// A very short item: a few words, no sentence punctuation, no digits, no table cells.
    short: bool,
    /// Reads as a sentence.
    prose: bool,
}

/// Whether the chunk is not worth asking about, and why. `headings` is the chunk's heading
/// path: a "Contents" or "Índice" heading counts as a title above the entries.
#[must_use]
pub fn classify(text: &str, headings: &[String]) -> Option<Skip> {
    let lines: Vec<Line> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(look).collect();
    if lines.is_empty() {
        return None;
    }
    let n = lines.len();
    let total: usize = lines.iter().map(|l| l.chars).sum::<usize>().max(1);
    let prose_chars: usize = lines.iter().filter(|l| l.prose).map(|l| l.chars).sum();
    #[allow(clippy::cast_precision_loss)]
    let prose = prose_chars as f32 / total as f32;
    #[allow(clippy::cast_precision_loss)]
    let share = |k: usize| k as f32 / n as f32;

    if let Some(skip) = boilerplate(text, total) {
        return Some(skip);
    }

    // Tables of contents and indexes.
    let leaders = lines.iter().filter(|l| l.leader).count();
    let pages: Vec<u32> = lines.iter().filter_map(|l| l.page).collect();
    let entries = pages.len();
    let titled = text.lines().map(str::trim).filter(|l| !l.is_empty()).take(3).any(is_toc_title)
        || headings.iter().any(|h| is_toc_title(h));
    let rising = pages.windows(2).filter(|w| w[0] <= w[1]).count();
    #[allow(clippy::cast_precision_loss)]
    let ordered = if pages.len() < 2 { 0.0 } else { rising as f32 / (pages.len() - 1) as f32 };
    let distinct = {
        let mut p = pages.clone();
        p.sort_unstable();
        p.dedup();
        p.len()
    };
    let lines_word = |k: usize| format!("{k} of {n} lines");
    if leaders >= 3 && share(leaders) >= 0.3 {
        return Some(Skip {
            reason: Reason::Toc,
            detail: format!("{} end in dot leaders and a page number", lines_word(leaders)),
        });
    }
    if titled && entries >= 2 && share(entries) >= 0.25 && prose < 0.6 {
        return Some(Skip {
            reason: Reason::Toc,
            detail: format!("a contents or index title, and {} end in a page number", lines_word(entries)),
        });
    }
    if entries >= 4 && share(entries) >= 0.5 && ordered >= 0.75 && distinct >= 3 && prose < 0.5 {
        return Some(Skip {
            reason: Reason::Toc,
            detail: format!("{} end in a page number, rising through the chunk", lines_word(entries)),
        });
    }
    let index = lines.iter().filter(|l| l.index).count();
    if index >= 5 && share(index) >= 0.5 {
        return Some(Skip {
            reason: Reason::Toc,
            detail: format!("{} are index entries (a term, then page numbers)", lines_word(index)),
        });
    }

    // Navigation.
    let nav = lines.iter().filter(|l| l.nav).count();
    let short = lines.iter().filter(|l| l.short && !l.nav).count();
    if nav >= 3 && share(nav) >= 0.4 && prose < 0.5 {
        return Some(Skip {
            reason: Reason::Navigation,
            detail: format!("{} are links, breadcrumbs or menu words", lines_word(nav)),
        });
    }
    if nav >= 1 && nav + short >= 6 && share(nav + short) >= 0.7 && prose < 0.25 {
        return Some(Skip {
            reason: Reason::Navigation,
            detail: format!("{} are menu words, links or very short items", lines_word(nav + short)),
        });
    }
    if short >= 10 && share(short) >= 0.9 && prose < 0.05 {
        return Some(Skip {
            reason: Reason::Navigation,
            detail: format!("{} are very short items, with no sentence", lines_word(short)),
        });
    }
    None
}

fn is_toc_title(line: &str) -> bool {
    // "1. Índice", "ÍNDICE:", "Table of Contents" alike.
    let w: Vec<String> = words(line).into_iter().skip_while(|w| w.chars().all(|c| c.is_ascii_digit())).collect();
    let joined = w.join(" ");
    TOC_TITLES.contains(&joined.as_str())
}

/// Copyright or license boilerplate: a strong phrase and a weight of 4 or more, or 3 or more
/// in a short chunk (under 400 characters: a notice alone).
fn boilerplate(text: &str, chars: usize) -> Option<Skip> {
    let line = word_line(text);
    let mut found: Vec<&str> = Vec::new();
    let mut weight = 0;
    let mut strong = 0;
    let symbol = text.contains('©') || {
        let lower = text.to_lowercase();
        ["(c) 1", "(c) 2", "(c)1", "(c)2"].iter().any(|p| lower.contains(p))
    };
    if symbol {
        found.push("©");
        weight += 2;
        strong += 1;
    }
    for p in STRONG {
        if contains_phrase(&line, p) {
            found.push(p);
            weight += 2;
            strong += 1;
        }
    }
    for p in WEAK {
        if contains_phrase(&line, p) {
            found.push(p);
            weight += 1;
        }
    }
    let enough = weight >= 4 || (weight >= 3 && chars < 400);
    (strong >= 1 && enough).then(|| Skip {
        reason: Reason::Boilerplate,
        detail: format!("copyright or license text: {}", found.join(", ")),
    })
}

/// What one trimmed, non-empty line looks like.
fn look(raw: &str) -> Line {
    let chars = raw.chars().count();
    // Markdown furniture off: list bullets, heading marks, block quotes.
    let body = raw.trim_start_matches(['#', '>', '-', '*', '+', '•', '·', '–', ' ']).trim();
    let n_words = body.split_whitespace().count();
    let (leader, page) = page_number(body);
    let index = is_index_entry(body);
    let nav = is_link_line(body) || is_breadcrumb(body) || NAV_LINES.contains(&words(body).join(" ").as_str());
    let ends_sentence = body.ends_with(['.', '!', '?', ':', ';', '。', '！', '？', '"', '»', '”', ')']);
    let short = (1..=4).contains(&n_words)
        && body.chars().count() <= 40
        && !ends_sentence
        && !body.contains(['\t', '|'])
        && !body.chars().any(|c| c.is_ascii_digit());
    let cjk_sentence = body.ends_with('。') && body.chars().count() >= 15;
    let prose = page.is_none()
        && !nav
        && !index
        && (n_words >= 6 || (n_words >= 3 && ends_sentence) || cjk_sentence)
        && !body.contains('\t');
    Line { chars, leader, page, index, nav, short, prose }
}

/// Whether a line ends in a page number (1 to 3 digits, or a Roman numeral after leaders):
/// `(ends in dot leaders, the page)`. Not a page: a number closing a sentence, a year after a
/// month, a time, a number in a long line.
fn page_number(line: &str) -> (bool, Option<u32>) {
    let t = line.trim_end();
    let digits = t.len() - t.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (head, page) = if digits > 0 {
        let head = &t[..t.len() - digits];
        (head, t[t.len() - digits..].parse::<u32>().ok())
    } else {
        // A Roman page (front matter) counts only after leaders.
        let roman = t.len() - t.trim_end_matches(['i', 'v', 'x', 'l', 'I', 'V', 'X', 'L']).len();
        let head = &t[..t.len() - roman];
        let r = roman_value(&t[t.len() - roman..]);
        if roman == 0 || r.is_none() || !ends_in_leaders(head) {
            return (false, None);
        }
        return (true, r);
    };
    let Some(page) = page else { return (false, None) };
    if ends_in_leaders(head) && head.chars().any(char::is_alphabetic) {
        return (true, Some(page));
    }
    // Without leaders: separated by space or tab, at most 3 digits, a short line with letters,
    // not closing a sentence, a date, a time, a range or a measure.
    let sep = head.ends_with([' ', '\t']);
    let before = head.trim_end();
    let last_word = before.rsplit(|c: char| c.is_whitespace()).next().unwrap_or("");
    let last_folded = words(last_word).pop().unwrap_or_default();
    let plain = sep
        && digits <= 3
        && before.chars().any(char::is_alphabetic)
        && line.split_whitespace().count() <= 15
        && !before.ends_with(['.', ',', ';', ':', '!', '?', '-', '–', '/', '+', '='])
        && !MONTHS.contains(&last_folded.as_str())
        && !LABELS.contains(&last_folded.as_str());
    (false, plain.then_some(page))
}

fn ends_in_leaders(head: &str) -> bool {
    let tail: String = head.chars().rev().take_while(|c| matches!(c, '.' | '…' | '·' | '_' | ' ' | '\t')).collect();
    let marks = tail.chars().filter(|c| matches!(c, '.' | '·' | '_')).count() + 3 * tail.matches('…').count();
    marks >= 3
}

fn roman_value(s: &str) -> Option<u32> {
    let s = s.to_ascii_lowercase();
    let value = |c: char| match c {
        'i' => 1,
        'v' => 5,
        'x' => 10,
        'l' => 50,
        _ => 0,
    };
    let v: Vec<u32> = s.chars().map(value).collect();
    if v.is_empty() || v.len() > 6 {
        return None;
    }
    let mut total: i64 = 0;
    for (i, x) in v.iter().enumerate() {
        if v.get(i + 1).is_some_and(|next| next > x) {
            total -= i64::from(*x);
        } else {
            total += i64::from(*x);
        }
    }
    u32::try_from(total).ok().filter(|t| *t > 0)
}

/// `calibración, 12, 45–47` or `flange bolts, 18`: a term, a comma, then page numbers and
/// ranges separated by commas.
fn is_index_entry(line: &str) -> bool {
    let Some((term, pages)) = line.split_once(", ").filter(|(_, p)| p.starts_with(|c: char| c.is_ascii_digit())) else {
        return false;
    };
    let term_ok = term.chars().any(char::is_alphabetic) && term.split_whitespace().count() <= 6;
    let pages_ok = pages.split(',').map(str::trim).all(|p| {
        !p.is_empty()
            && p.split(['-', '–']).all(|n| !n.is_empty() && n.len() <= 4 && n.chars().all(|c| c.is_ascii_digit()))
    });
    term_ok && pages_ok
}

/// A line of links only: markdown links and URLs, with nothing but separators between them.
fn is_link_line(line: &str) -> bool {
    let mut rest = line.to_string();
    let mut links = 0;
    // [text](target)
    while let Some(open) = rest.find('[') {
        let Some(mid) = rest[open..].find("](").map(|m| open + m) else { break };
        let Some(close) = rest[mid..].find(')').map(|c| mid + c) else { break };
        rest.replace_range(open..=close, " ");
        links += 1;
    }
    let kept: Vec<&str> = rest
        .split_whitespace()
        .filter(|w| {
            let url = w.starts_with("http://") || w.starts_with("https://") || w.starts_with("www.");
            links += usize::from(url);
            !url
        })
        .collect();
    links > 0 && kept.iter().all(|w| !w.chars().any(char::is_alphanumeric))
}

/// `Home > Products > Meters`, `Inicio | Servicios | Contacto`: three or more short segments.
fn is_breadcrumb(line: &str) -> bool {
    CRUMB_SEPARATORS.iter().any(|sep| {
        let parts: Vec<&str> = line.split(sep).map(str::trim).collect();
        parts.len() >= 3
            && parts.iter().all(|p| {
                let n = p.split_whitespace().count();
                (1..=4).contains(&n) && !p.ends_with(['.', '!', '?'])
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_numbers_leaders_and_dates() {
        assert_eq!(page_number("1. Objeto ........................ 3"), (true, Some(3)));
        assert_eq!(page_number("Introduction . . . . . . . 12"), (true, Some(12)));
        assert_eq!(page_number("Prólogo ……… xi"), (true, Some(11)));
        assert_eq!(page_number("2.1 Scheduling\t5"), (false, Some(5)));
        assert_eq!(page_number("Revision 4, March 2026"), (false, None));
        assert_eq!(page_number("Fecha: 3 de febrero de 2026"), (false, None));
        assert_eq!(page_number("se levanta la sesión a las 12:40."), (false, None));
        assert_eq!(page_number("The meter is calibrated every year, see step 4."), (false, None));
        assert_eq!(page_number("Chapter IV"), (false, None));
        assert_eq!(page_number("Paso 3"), (false, None), "a label, not a page");
        assert_eq!(page_number("Tabla 2"), (false, None));
        assert!(is_index_entry("calibración, 12, 45–47"));
        assert!(is_index_entry("flange bolts, 18"));
        assert!(!is_index_entry("Revision 4, March 2026"));
        assert!(!is_index_entry("Memoria anual, folletos,"));
    }

    #[test]
    fn links_and_breadcrumbs() {
        assert!(is_link_line("[Inicio](/) · [Contacto](/contacto)"));
        assert!(is_link_line("https://example.org/docs"));
        assert!(!is_link_line("See [the guide](guide.md) for the details."));
        assert!(is_breadcrumb("Home > Products > Flow meters > NW-300"));
        assert!(is_breadcrumb("Inicio | Servicios | Contacto"));
        assert!(!is_breadcrumb("Pressure > 10 bar and flow > 5 m3/h need a permit."));
    }
}
