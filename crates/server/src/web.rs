//! The web app: a single page (vanilla ES modules, one stylesheet, SVG drawn by the page)
//! served at `/`, its files at `/app/{file}`.
//!
//! Every file of `crates/server/web/` is embedded in the binary ([`ASSETS`]): nothing is read
//! from disk or fetched from elsewhere at run time, and the page loads nothing but these files
//! and the API of the same origin. Assets need no key; the page sends the key it was given
//! (`Authorization: Bearer`) on each API call.
//!
//! Each answer carries a strict `Content-Security-Policy` (scripts, styles and connections from
//! this origin only, no inline scripts), `X-Content-Type-Options: nosniff`, and
//! `Cache-Control: no-cache` with an `ETag` (the sha256 of the file), so a browser revalidates
//! and gets `304 Not Modified` until the server is upgraded.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path as UrlPath;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, HeaderName, IF_NONE_MATCH, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::ServerError;
use crate::server::AppState;

/// The policy every page and asset is served with: this origin only, no inline scripts or
/// styles, no plugins, no framing, no `<base>`.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'self'; connect-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// How browsers may cache the files: keep them, but ask (with the `ETag`) before each use.
pub const CACHE_CONTROL_VALUE: &str = "no-cache";

/// One embedded file of the web app.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Its name under `/app/` (and under `crates/server/web/`).
    pub name: &'static str,
    /// The `Content-Type` it is served with.
    pub content_type: &'static str,
    /// Its bytes.
    pub bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset { name: $name, content_type: $content_type, bytes: include_bytes!(concat!("../web/", $name)) }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// The page itself, served at `/`.
pub const INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");

/// Every file of `crates/server/web/` but `index.html`, served at `/app/{name}`.
pub const ASSETS: &[Asset] = &[
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("main.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("i18n.js", JS),
    asset!("strings.js", JS),
    asset!("chart.js", JS),
    asset!("signin.js", JS),
    asset!("collections.js", JS),
    asset!("chat.js", JS),
    asset!("finetune.js", JS),
    asset!("datasets.js", JS),
    asset!("hub.js", JS),
];

/// The embedded file served at `/app/{name}`.
#[must_use]
pub fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// `GET /` and `GET /app/{file}` (HEAD too). Not in the OpenAPI document: they are the page,
/// not the API.
pub fn router() -> Router<AppState> {
    Router::new().route("/", get(index)).route("/app/{file}", get(app_file))
}

async fn index(headers: HeaderMap) -> Response {
    serve(&INDEX, &headers)
}

async fn app_file(UrlPath(file): UrlPath<String>, headers: HeaderMap) -> Response {
    match asset(&file) {
        Some(a) => serve(a, &headers),
        None => ServerError::NotFound { kind: "file of the web app", id: file }.into_response(),
    }
}

/// The strong `ETag` of an asset: a quoted prefix of its sha256, computed once per file.
fn etag(asset: &Asset) -> &'static str {
    static TAGS: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        std::iter::once(&INDEX)
            .chain(ASSETS)
            .map(|a| {
                let hash = Sha256::digest(a.bytes);
                let hex: String = hash.iter().take(12).map(|b| format!("{b:02x}")).collect();
                (a.name, format!("\"{hex}\""))
            })
            .collect()
    });
    tags.iter().find(|(name, _)| *name == asset.name).map_or("\"\"", |(_, tag)| tag.as_str())
}

fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let tag = etag(asset);
    let fresh = request
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let headers = [
        (CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
        (CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE)),
        (CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL_VALUE)),
        (ETAG, HeaderValue::from_static(tag)),
        (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        (HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin")),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (headers, asset.bytes).into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn text(a: &Asset) -> &'static str {
        std::str::from_utf8(a.bytes).unwrap_or_else(|e| panic!("{}: not UTF-8: {e}", a.name))
    }

    fn all() -> impl Iterator<Item = &'static Asset> {
        std::iter::once(&INDEX).chain(ASSETS)
    }

    /// The values of `attr="…"` in `html`.
    fn attr_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
        let needle = format!(" {attr}=\"");
        let mut out = Vec::new();
        let mut rest = html;
        while let Some(i) = rest.find(&needle) {
            rest = &rest[i + needle.len()..];
            if let Some(end) = rest.find('"') {
                out.push(&rest[..end]);
                rest = &rest[end..];
            }
        }
        out
    }

    /// The specifiers of `… from './x.js'`, `import './x.js'` and `import('./x.js')` in a module.
    fn imports(js: &str) -> Vec<&str> {
        let mut out = Vec::new();
        for opener in [" from '", "import '", "import('"] {
            for part in js.split(opener).skip(1) {
                if let Some(end) = part.find('\'') {
                    out.push(&part[..end]);
                }
            }
        }
        out
    }

    /// The name under `/app/` that a module specifier or URL of the page points at.
    fn app_name(reference: &str) -> &str {
        reference.strip_prefix("/app/").or_else(|| reference.strip_prefix("./")).unwrap_or(reference)
    }

    #[test]
    fn every_file_of_the_web_folder_is_embedded_and_every_embedded_file_exists() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| !n.starts_with('.'))
            .collect();
        let embedded: BTreeSet<String> = all().map(|a| a.name.to_string()).collect();
        assert_eq!(on_disk, embedded, "list each file of {} in web::ASSETS", dir.display());
        assert_eq!(embedded.len(), ASSETS.len() + 1, "a file is listed twice");
    }

    #[test]
    fn the_page_and_its_modules_reference_only_embedded_files() {
        let html = text(&INDEX);
        let mut refs: Vec<&str> = attr_values(html, "src").into_iter().chain(attr_values(html, "href")).collect();
        refs.retain(|r| !r.starts_with('#'));
        assert!(refs.contains(&"/app/main.js") && refs.contains(&"/app/app.css"), "{refs:?}");
        for r in &refs {
            assert!(r.starts_with("/app/"), "index.html references {r}: only /app/ files");
            assert!(asset(app_name(r)).is_some(), "index.html references {r}, which is not embedded");
        }
        // Every module is reachable from main.js, and each import names an embedded module.
        let mut seen = BTreeSet::from(["main.js".to_string()]);
        let mut todo = vec!["main.js"];
        while let Some(name) = todo.pop() {
            let module = asset(name).unwrap();
            for spec in imports(text(module)) {
                assert!(spec.starts_with("./"), "{name} imports {spec}: only relative modules of the app");
                let target = app_name(spec);
                let found = asset(target).unwrap_or_else(|| panic!("{name} imports {spec}, which is not embedded"));
                assert_eq!(found.content_type, JS, "{name} imports {spec}");
                if seen.insert(target.to_string()) {
                    todo.push(found.name);
                }
            }
        }
        let modules: BTreeSet<String> = ASSETS.iter().filter(|a| a.content_type == JS).map(|a| a.name.into()).collect();
        assert_eq!(seen, modules, "modules not imported from main.js");
    }

    #[test]
    fn nothing_is_fetched_from_elsewhere_and_no_script_is_inline() {
        for a in all() {
            let t = text(a);
            // SVG names its XML namespace, which is not fetched.
            let without_ns = t.replace("http://www.w3.org/2000/svg", "");
            for scheme in ["http://", "https://", "//cdn", "ws://", "wss://"] {
                assert!(!without_ns.contains(scheme), "{} names a URL with {scheme}", a.name);
            }
            assert!(!t.contains("innerHTML") && !t.contains("outerHTML"), "{}: build nodes, not markup", a.name);
            assert!(!t.contains("eval(") && !t.contains("new Function"), "{}", a.name);
        }
        let html = text(&INDEX);
        assert!(!html.contains(" style=") && !html.contains("<style"), "inline styles break the CSP");
        let handlers: Vec<&str> = html
            .split(" on")
            .skip(1)
            .filter(|rest| rest.split_once('=').is_some_and(|(name, _)| name.chars().all(|c| c.is_ascii_lowercase())))
            .collect();
        assert!(handlers.is_empty(), "inline event handlers break the CSP: {handlers:?}");
        for tag in html.split("<script").skip(1) {
            let open = &tag[..tag.find('>').unwrap()];
            assert!(open.contains(" src=\"/app/") && open.contains("type=\"module\""), "<script{open}>");
            assert!(tag[tag.find('>').unwrap() + 1..].trim_start().starts_with("</script>"), "an inline script");
        }
    }

    /// The dictionaries of `strings.js`: the JSON object after `export const DICTIONARIES =`.
    fn dictionaries() -> BTreeMap<String, BTreeMap<String, String>> {
        let js = text(asset("strings.js").unwrap());
        let start = js.find("export const DICTIONARIES = ").unwrap() + "export const DICTIONARIES = ".len();
        let end = js.rfind("};").unwrap() + 1;
        serde_json::from_str(&js[start..end]).unwrap_or_else(|e| panic!("strings.js is not strict JSON: {e}"))
    }

    #[test]
    fn english_and_spanish_have_the_same_keys_and_every_key_used_exists() {
        let dicts = dictionaries();
        assert_eq!(dicts.keys().collect::<Vec<_>>(), ["en", "es"]);
        let en: BTreeSet<&String> = dicts["en"].keys().collect();
        let es: BTreeSet<&String> = dicts["es"].keys().collect();
        assert!(
            en == es,
            "only in English: {:?}; only in Spanish: {:?}",
            en.difference(&es).collect::<Vec<_>>(),
            es.difference(&en).collect::<Vec<_>>()
        );
        for (lang, dict) in &dicts {
            for (k, v) in dict {
                assert!(!v.trim().is_empty(), "{lang}.{k} is empty");
                // Placeholders `{name}` agree between the languages.
                let holes = |s: &str| -> BTreeSet<String> {
                    s.split('{').skip(1).filter_map(|p| p.split_once('}').map(|(h, _)| h.to_string())).collect()
                };
                assert_eq!(holes(v), holes(&dicts["en"][k]), "{lang}.{k}: placeholders differ from English");
            }
        }
        // Every key the page uses: t('key') in the modules, data-i18n*="key" in index.html.
        let mut used: BTreeSet<&str> = BTreeSet::new();
        for a in ASSETS.iter().filter(|a| a.content_type == JS) {
            let js = text(a);
            for (i, _) in js.match_indices("t('") {
                let before = js[..i].chars().next_back().unwrap_or(' ');
                if before.is_alphanumeric() || "_.$".contains(before) {
                    continue;
                }
                let rest = &js[i + 3..];
                if let Some(end) = rest.find('\'') {
                    used.insert(&rest[..end]);
                }
            }
        }
        let html = text(&INDEX);
        for attr in ["data-i18n", "data-i18n-label", "data-i18n-placeholder"] {
            used.extend(attr_values(html, attr));
        }
        assert!(used.len() > 50, "{used:?}");
        let missing: Vec<_> = used.iter().filter(|k| !dicts["en"].contains_key(**k)).collect();
        assert!(missing.is_empty(), "keys used but not in the dictionaries: {missing:?}");
    }

    #[test]
    fn etags_are_quoted_and_distinct() {
        let tags: BTreeSet<&str> = all().map(etag).collect();
        assert_eq!(tags.len(), ASSETS.len() + 1);
        assert!(tags.iter().all(|t| t.len() == 26 && t.starts_with('"') && t.ends_with('"')));
    }
}
