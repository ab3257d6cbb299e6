//! The `Authorization: Bearer KEY` extractor: every route but `/health` and `/openapi.json`
//! takes a [`Caller`], so a request without a live key never reaches a handler.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::admin::{Org, authenticate};
use crate::server::AppState;
use crate::{Result, ServerError};

/// The organization whose key signed the request. Every query a handler makes is scoped by
/// its id.
#[derive(Debug, Clone)]
pub struct Caller(pub Org);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ServerError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let header = parts.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default().trim();
        let key = header
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim())
            .filter(|key| !key.is_empty());
        let Some(key) = key else {
            return Err(ServerError::Unauthorized(
                "You didn't provide an API key. Send it as `Authorization: Bearer KEY` \
                 (`docraft admin org create` makes an organization and its first key)."
                    .into(),
            ));
        };
        match authenticate(state.db(), key).await? {
            Some(org) => Ok(Self(org)),
            None => Err(ServerError::Unauthorized("Incorrect or revoked API key provided.".into())),
        }
    }
}
