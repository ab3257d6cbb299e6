//! Interprets a page's content streams (text, graphics state, form XObjects) into positioned
//! glyphs, in the order the page draws them.

use std::collections::HashMap;
use std::rc::Rc;

use lopdf::content::{Content, Operation};
use lopdf::{Dictionary, Document, Object, ObjectId, Stream};

use super::font::Font;
use super::obj::{self, num};

/// Deepest nesting of form XObjects followed (guards against reference cycles).
const MAX_FORM_DEPTH: usize = 12;
/// Largest content stream inflated (bytes).
pub(crate) const MAX_CONTENT: usize = 256 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Matrix {
    a: f32,
    b: f32,
    c: f32,
    d: f32,
    e: f32,
    f: f32,
}

impl Matrix {
    pub(crate) const IDENTITY: Self = Self { a: 1.0, b: 0.0, c: 0.0, d: 1.0, e: 0.0, f: 0.0 };

    fn from_operands(ops: &[Object]) -> Option<Self> {
        let v: Vec<f32> = ops.iter().filter_map(num).collect();
        match v.as_slice() {
            [a, b, c, d, e, f] => Some(Self { a: *a, b: *b, c: *c, d: *d, e: *e, f: *f }),
            _ => None,
        }
    }

    /// `self` then `o` (row-vector convention, as in the PDF spec: `self × o`).
    fn then(&self, o: &Self) -> Self {
        Self {
            a: self.a * o.a + self.b * o.c,
            b: self.a * o.b + self.b * o.d,
            c: self.c * o.a + self.d * o.c,
            d: self.c * o.b + self.d * o.d,
            e: self.e * o.a + self.f * o.c + o.e,
            f: self.e * o.b + self.f * o.d + o.f,
        }
    }

    fn translate(tx: f32, ty: f32) -> Self {
        Self { e: tx, f: ty, ..Self::IDENTITY }
    }

    fn apply(&self, x: f32, y: f32) -> (f32, f32) {
        (x * self.a + y * self.c + self.e, x * self.b + y * self.d + self.f)
    }
}

fn stream_matrix(stream: &Stream) -> Matrix {
    stream
        .dict
        .get(b"Matrix")
        .ok()
        .and_then(|o| o.as_array().ok())
        .and_then(|a| Matrix::from_operands(a))
        .unwrap_or(Matrix::IDENTITY)
}

/// A glyph placed on the page, in its line's own frame: `u` runs along the baseline,
/// `v` across it (larger `v` = earlier line), whatever the text's rotation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Glyph {
    /// Byte range of its text in [`PageGlyphs::text`].
    pub start: u32,
    pub end: u32,
    pub u0: f32,
    pub u1: f32,
    pub v: f32,
    /// Glyph height (font size on the page).
    pub size: f32,
    /// Direction: 0 left-to-right, 1 bottom-to-top, 2 upside down, 3 top-to-bottom.
    pub dir: u8,
}

/// Everything drawn as text on one page.
#[derive(Debug, Default)]
pub(crate) struct PageGlyphs {
    pub text: String,
    pub glyphs: Vec<Glyph>,
    /// Images drawn (XObjects and inline).
    pub images: usize,
    /// Glyphs whose font gave no Unicode text.
    pub unmapped: usize,
}

impl PageGlyphs {
    /// Appends `text` to the page text; returns its byte range there.
    fn push_text(&mut self, text: &str) -> (u32, u32) {
        let start = u32::try_from(self.text.len()).unwrap_or(u32::MAX);
        self.text.push_str(text);
        (start, u32::try_from(self.text.len()).unwrap_or(u32::MAX))
    }
}

#[derive(Clone)]
struct State {
    ctm: Matrix,
    font: Option<Rc<Font>>,
    size: f32,
    char_spacing: f32,
    word_spacing: f32,
    hscale: f32,
    leading: f32,
    rise: f32,
}

impl Default for State {
    fn default() -> Self {
        Self {
            ctm: Matrix::IDENTITY,
            font: None,
            size: 0.0,
            char_spacing: 0.0,
            word_spacing: 0.0,
            hscale: 1.0,
            leading: 0.0,
            rise: 0.0,
        }
    }
}

/// Resource dictionaries in lookup order (innermost first).
pub(crate) type Resources<'a> = Vec<&'a Dictionary>;

/// The entry `key` of resource `category` (`Font`, `XObject`, ...), innermost first, as
/// written: a reference stays a reference (its id keys caches and cycle checks).
fn resource_entry<'a>(doc: &'a Document, res: &Resources<'a>, category: &[u8], key: &[u8]) -> Option<&'a Object> {
    res.iter().find_map(|d| obj::get_dict(doc, d, category)?.get(key).ok())
}

/// [`resource_entry`] with a reference followed.
fn lookup<'a>(doc: &'a Document, res: &Resources<'a>, category: &[u8], key: &[u8]) -> Option<&'a Object> {
    resource_entry(doc, res, category, key).map(|o| obj::deref(doc, o))
}

/// Walks content streams and collects glyphs.
pub(crate) struct Interpreter<'a> {
    doc: &'a Document,
    fonts: &'a mut HashMap<ObjectId, Rc<Font>>,
    /// Fonts given inline (not by reference), keyed by their address for this page only.
    inline_fonts: HashMap<usize, Rc<Font>>,
    out: PageGlyphs,
    forms_seen: Vec<ObjectId>,
    /// Open marked-content sequences: the `/ActualText` of each (if any) and the number of
    /// glyphs drawn before it began.
    marked: Vec<(Option<String>, usize)>,
}

impl<'a> Interpreter<'a> {
    pub(crate) fn new(doc: &'a Document, fonts: &'a mut HashMap<ObjectId, Rc<Font>>) -> Self {
        Self {
            doc,
            fonts,
            inline_fonts: HashMap::new(),
            out: PageGlyphs::default(),
            forms_seen: Vec::new(),
            marked: Vec::new(),
        }
    }

    pub(crate) fn finish(self) -> PageGlyphs {
        self.out
    }

    fn font(&mut self, res: &Resources<'a>, name: &[u8]) -> Option<Rc<Font>> {
        // The reference (for caching across pages) or the inline dictionary.
        match resource_entry(self.doc, res, b"Font", name)? {
            Object::Reference(id) => {
                if let Some(f) = self.fonts.get(id) {
                    return Some(f.clone());
                }
                let dict = self.doc.get_dictionary(*id).ok()?;
                let f = Rc::new(Font::load(self.doc, dict));
                self.fonts.insert(*id, f.clone());
                Some(f)
            }
            Object::Dictionary(d) => {
                let key = std::ptr::from_ref(d) as usize;
                if let Some(f) = self.inline_fonts.get(&key) {
                    return Some(f.clone());
                }
                let f = Rc::new(Font::load(self.doc, d));
                self.inline_fonts.insert(key, f.clone());
                Some(f)
            }
            _ => None,
        }
    }

    /// Runs one content stream with `res` and starting matrix `ctm`.
    pub(crate) fn run(&mut self, content: &[u8], res: &Resources<'a>, ctm: Matrix) {
        let mut gs = State { ctm, ..State::default() };
        let mut stack: Vec<State> = Vec::new();
        let mut tm = Matrix::IDENTITY;
        let mut tlm = Matrix::IDENTITY;
        // A damaged stream yields the operations before the damage.
        for op in Content::decode_iter(content) {
            let Ok(op) = op else { break };
            let Operation { operator, operands } = &op;
            let f = |i: usize| operands.get(i).and_then(num).unwrap_or(0.0);
            match operator.as_str() {
                "q" => stack.push(gs.clone()),
                "Q" => {
                    if let Some(s) = stack.pop() {
                        gs = s;
                    }
                }
                "cm" => {
                    if let Some(m) = Matrix::from_operands(operands) {
                        gs.ctm = m.then(&gs.ctm);
                    }
                }
                "BT" => {
                    tm = Matrix::IDENTITY;
                    tlm = Matrix::IDENTITY;
                }
                "Tf" => {
                    gs.size = f(1);
                    gs.font = match operands.first() {
                        Some(Object::Name(n)) => self.font(res, n),
                        _ => None,
                    };
                }
                "Tc" => gs.char_spacing = f(0),
                "Tw" => gs.word_spacing = f(0),
                "Tz" => gs.hscale = f(0) / 100.0,
                "TL" => gs.leading = f(0),
                "Ts" => gs.rise = f(0),
                "Td" => {
                    tlm = Matrix::translate(f(0), f(1)).then(&tlm);
                    tm = tlm;
                }
                "TD" => {
                    gs.leading = -f(1);
                    tlm = Matrix::translate(f(0), f(1)).then(&tlm);
                    tm = tlm;
                }
                "Tm" => {
                    if let Some(m) = Matrix::from_operands(operands) {
                        tlm = m;
                        tm = m;
                    }
                }
                "T*" => {
                    tlm = Matrix::translate(0.0, -gs.leading).then(&tlm);
                    tm = tlm;
                }
                "Tj" => {
                    if let Some(Object::String(s, _)) = operands.first() {
                        self.show(&gs, &mut tm, s);
                    }
                }
                "'" | "\"" => {
                    if operator == "\"" {
                        gs.word_spacing = f(0);
                        gs.char_spacing = f(1);
                    }
                    tlm = Matrix::translate(0.0, -gs.leading).then(&tlm);
                    tm = tlm;
                    if let Some(Object::String(s, _)) = operands.last() {
                        self.show(&gs, &mut tm, s);
                    }
                }
                "TJ" => {
                    if let Some(Object::Array(items)) = operands.first() {
                        for item in items {
                            match item {
                                Object::String(s, _) => self.show(&gs, &mut tm, s),
                                other => {
                                    if let Some(n) = num(other) {
                                        let tx = -n / 1000.0 * gs.size * gs.hscale;
                                        let vertical = gs.font.as_ref().is_some_and(|f| f.vertical);
                                        let (tx, ty) = if vertical { (0.0, tx) } else { (tx, 0.0) };
                                        tm = Matrix::translate(tx, ty).then(&tm);
                                    }
                                }
                            }
                        }
                    }
                }
                "Do" => {
                    if let Some(Object::Name(n)) = operands.first() {
                        self.xobject(res, n, gs.ctm);
                    }
                }
                "BI" | "INLINE IMAGE" => self.out.images += 1,
                "BMC" => self.marked.push((None, self.out.glyphs.len())),
                "BDC" => {
                    let actual = operands.get(1).and_then(|props| self.actual_text(res, props));
                    self.marked.push((actual, self.out.glyphs.len()));
                }
                "EMC" => {
                    if let Some((Some(actual), first)) = self.marked.pop() {
                        self.replace_with_actual_text(first, &actual);
                    }
                }
                _ => {}
            }
        }
    }

    /// The `/ActualText` of a marked-content property list (inline, or named in the
    /// resources' `/Properties`).
    fn actual_text(&self, res: &Resources<'a>, props: &Object) -> Option<String> {
        let dict = match props {
            Object::Dictionary(d) => d,
            Object::Name(n) => lookup(self.doc, res, b"Properties", n)?.as_dict().ok()?,
            _ => return None,
        };
        match dict.get(b"ActualText").ok()? {
            Object::String(bytes, _) => Some(super::text_string(bytes)),
            _ => None,
        }
    }

    /// The glyphs drawn since `first` stand for `actual` (a producer's replacement text for
    /// ligatures, fallback glyphs, hyphenation): they become one glyph spanning them all.
    fn replace_with_actual_text(&mut self, first: usize, actual: &str) {
        let glyphs = &mut self.out.glyphs;
        let Some(head) = glyphs.get(first).copied() else {
            return;
        };
        let u1 = glyphs.iter().skip(first).filter(|g| g.dir == head.dir).map(|g| g.u1).fold(head.u1, f32::max);
        glyphs.truncate(first);
        let (start, end) = self.out.push_text(actual);
        if start < end {
            self.out.glyphs.push(Glyph { start, end, u1, ..head });
        }
    }

    /// Runs a form XObject (its own matrix and resources, falling back to `res`) under `ctm`.
    fn form(&mut self, stream: &'a Stream, id: ObjectId, res: &Resources<'a>, ctm: Matrix) {
        if self.forms_seen.len() >= MAX_FORM_DEPTH || (id != (0, 0) && self.forms_seen.contains(&id)) {
            return;
        }
        let Ok(content) = stream.get_plain_content_with_limit(MAX_CONTENT) else {
            return;
        };
        let matrix = stream_matrix(stream);
        let mut inner: Resources<'a> = Vec::with_capacity(res.len() + 1);
        inner.extend(obj::get_dict(self.doc, &stream.dict, b"Resources"));
        inner.extend(res.iter().copied());
        self.forms_seen.push(id);
        self.run(&content, &inner, matrix.then(&ctm));
        self.forms_seen.pop();
    }

    /// Draws the normal appearance of an annotation (a filled-in form field, a free-text
    /// note): its appearance stream's bounding box is fitted to the annotation's rectangle.
    pub(crate) fn annotation(&mut self, annot: &'a Dictionary, res: &Resources<'a>) {
        let doc = self.doc;
        let get = |d: &'a Dictionary, k: &[u8]| obj::get(doc, d, k);
        let kind = get(annot, b"Subtype").and_then(|o| o.as_name().ok());
        if !matches!(kind, Some(b"Widget" | b"FreeText")) {
            return;
        }
        // Hidden (bit 2) or no-view (bit 6) annotations are not shown.
        let flags = get(annot, b"F").and_then(|o| o.as_i64().ok()).unwrap_or(0);
        if flags & (2 | 32) != 0 {
            return;
        }
        let rect = |o: Option<&Object>| -> Option<[f32; 4]> {
            let v: Vec<f32> = o?.as_array().ok()?.iter().filter_map(num).collect();
            let [a, b, c, d] = v.as_slice() else {
                return None;
            };
            Some([a.min(*c), b.min(*d), a.max(*c), b.max(*d)])
        };
        let Some(r) = rect(get(annot, b"Rect")) else {
            return;
        };
        // A text or choice field's value, for when its appearance shows nothing (viewers
        // build one from the value when the file asks them to).
        let parent = get(annot, b"Parent").and_then(|o| o.as_dict().ok());
        let field = |k: &[u8]| get(annot, k).or_else(|| parent.and_then(|p| get(p, k)));
        let is_text = matches!(field(b"FT").and_then(|o| o.as_name().ok()), Some(b"Tx" | b"Ch"));
        let value = match field(b"V") {
            Some(Object::String(v, _)) if is_text => Some(super::text_string(v)),
            _ => None,
        };
        let before = self.out.glyphs.len();
        if let Some(Object::Stream(ap)) = get(annot, b"AP").and_then(|o| o.as_dict().ok()).and_then(|ap| get(ap, b"N"))
            && let Some(bb) = rect(ap.dict.get(b"BBox").ok())
        {
            self.appearance(ap, bb, r, res);
        }
        if self.out.glyphs.len() == before
            && let Some(v) = value
        {
            self.synthetic_text(&v, r);
        }
    }

    /// Draws an appearance stream whose bounding box `bb`, transformed by its matrix, is
    /// fitted to the annotation rectangle `r`.
    fn appearance(&mut self, ap: &'a Stream, bb: [f32; 4], r: [f32; 4], res: &Resources<'a>) {
        // The bbox, transformed by the form matrix, is mapped onto the rectangle.
        let m = stream_matrix(ap);
        let corners = [m.apply(bb[0], bb[1]), m.apply(bb[2], bb[3]), m.apply(bb[0], bb[3]), m.apply(bb[2], bb[1])];
        let (x0, x1) = corners.iter().fold((f32::MAX, f32::MIN), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
        let (y0, y1) = corners.iter().fold((f32::MAX, f32::MIN), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
        let sx = if x1 > x0 { (r[2] - r[0]) / (x1 - x0) } else { 1.0 };
        let sy = if y1 > y0 { (r[3] - r[1]) / (y1 - y0) } else { 1.0 };
        let fit = Matrix { a: sx, b: 0.0, c: 0.0, d: sy, e: r[0] - x0 * sx, f: r[1] - y0 * sy };
        self.form(ap, (0, 0), res, fit);
    }

    /// Places `text` as one line inside rectangle `r` (a form field without appearance).
    fn synthetic_text(&mut self, text: &str, r: [f32; 4]) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        let size = ((r[3] - r[1]) * 0.7).clamp(4.0, 14.0);
        let (start, end) = self.out.push_text(text);
        let u0 = r[0] + 2.0;
        let u1 = (u0 + 0.5 * size * text.chars().count() as f32).min(r[2].max(u0));
        let v = r[1] + (r[3] - r[1] - size) / 2.0;
        self.out.glyphs.push(Glyph { start, end, u0, u1, v, size, dir: 0 });
    }

    fn xobject(&mut self, res: &Resources<'a>, name: &[u8], ctm: Matrix) {
        let Some(entry) = resource_entry(self.doc, res, b"XObject", name) else {
            return;
        };
        // The id detects cycles.
        let id = entry.as_reference().ok();
        let Object::Stream(stream) = obj::deref(self.doc, entry) else {
            return;
        };
        match stream.dict.get(b"Subtype").ok().and_then(|o| o.as_name().ok()) {
            Some(b"Image") => self.out.images += 1,
            Some(b"Form") => self.form(stream, id.unwrap_or((0, 0)), res, ctm),
            _ => {}
        }
    }

    fn show(&mut self, gs: &State, tm: &mut Matrix, bytes: &[u8]) {
        let Some(font) = gs.font.clone() else { return };
        let size = gs.size;
        let th = gs.hscale;
        let out = &mut self.out;
        font.decode(bytes, |g| {
            let m = tm.then(&gs.ctm);
            let glyph_w = g.advance * size * th;
            let (x0, y0) = m.apply(0.0, gs.rise);
            let (x1, y1) = if font.vertical { m.apply(0.0, gs.rise - size) } else { m.apply(glyph_w, gs.rise) };
            let height = (size * font.height_scale * m.c.hypot(m.d)).abs();
            let (dx, dy) = if (x1 - x0).abs() + (y1 - y0).abs() > 1e-4 { (x1 - x0, y1 - y0) } else { (m.a, m.b) };
            let dir = if dx.abs() >= dy.abs() {
                if dx >= 0.0 { 0 } else { 2 }
            } else if dy > 0.0 {
                1
            } else {
                3
            };
            let frame = |x: f32, y: f32| match dir {
                0 => (x, y),
                1 => (y, -x),
                2 => (-x, -y),
                _ => (-y, x),
            };
            let (u0, v) = frame(x0, y0);
            let (u1, _) = frame(x1, y1);
            if g.unmapped {
                out.unmapped += 1;
            }
            if !g.text.is_empty() {
                let (start, end) = out.push_text(g.text);
                out.glyphs.push(Glyph { start, end, u0, u1: u1.max(u0), v, size: height.max(0.1), dir });
            }
            // Advance the text matrix.
            let spacing = gs.char_spacing + if g.is_space_code { gs.word_spacing } else { 0.0 };
            if font.vertical {
                *tm = Matrix::translate(0.0, -(size + spacing)).then(tm);
            } else {
                *tm = Matrix::translate((g.advance * size + spacing) * th, 0.0).then(tm);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_order_matches_spec() {
        // Scale by 2 then translate by (10, 0): a point (1, 1) goes to (12, 2).
        let m = Matrix { a: 2.0, d: 2.0, ..Matrix::IDENTITY }.then(&Matrix::translate(10.0, 0.0));
        assert_eq!(m.apply(1.0, 1.0), (12.0, 2.0));
    }
}
