//! Who is calling: API-key authentication, per-route scopes and the
//! [`Principal`] handlers work with.
//!
//! [`authenticate`] runs in front of every `/v1` route and the fallback
//! (only the health probes skip it, see [`crate::app`]). It reads
//! `Authorization: Bearer <key>`, hashes the key with SHA-256 and compares
//! the digest with *every* configured digest using constant-time equality,
//! without stopping at a match, so neither which key matched nor how much of
//! a guess was right shows in the response time. The result is a
//! [`Principal`] in the request extensions; a missing or unknown key is a
//! 401 before any handler (or route lookup: unknown paths are 401 too, so an
//! anonymous caller learns nothing about the API's surface).
//!
//! [`require`] wraps one route's handler in a scope check (403 when the key
//! lacks it); routes declare their scope where they are registered, so a new
//! admin route is one `require(Scope::Admin, …)` away.
//!
//! With authentication off every request gets the anonymous principal: no
//! tenant, every scope. Handlers therefore take a `Principal` unconditionally
//! and never ask whether authentication is on.
//!
//! Nothing here logs or returns a key; logs name the tenant only.

pub mod keys;
pub mod principal;

pub(crate) use principal::bearer_token;
pub use principal::{Authenticator, Principal};

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use tracing::Instrument;

pub use crate::http::auth::keys::Scope;

use crate::http::error::ApiError;
use crate::state::AppState;

/// Middleware: establishes the [`Principal`] or answers 401.
pub async fn authenticate(
    State(auth): State<Arc<Authenticator>>,
    mut req: Request,
    next: Next,
) -> Response {
    let principal = match auth.principal(req.headers()) {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(method = %req.method(), path = %req.uri().path(), reason = %e,
                "request refused: not authenticated");
            return e.into_response();
        }
    };
    // Everything logged while handling the request names the tenant.
    let span = match principal.tenant() {
        Some(tenant) => tracing::info_span!("tenant", tenant),
        None => tracing::Span::none(),
    };
    req.extensions_mut().insert(principal);
    next.run(req).instrument(span).await
}

/// Middleware: 403 unless the principal has `scope`.
async fn check_scope(State(scope): State<Scope>, req: Request, next: Next) -> Response {
    let allowed = match req.extensions().get::<Principal>() {
        Some(p) => p.allows(scope),
        None => {
            return ApiError::Internal("route is not behind authentication".into()).into_response();
        }
    };
    if allowed {
        next.run(req).await
    } else {
        ApiError::Forbidden(format!("this API key lacks the `{scope}` scope")).into_response()
    }
}

/// `route` (one or more methods) guarded by `scope`: callers without it get
/// 403 before the handler runs. Combine differently guarded methods of one
/// path with [`MethodRouter::merge`].
pub fn require(scope: Scope, route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    route.route_layer(middleware::from_fn_with_state(scope, check_scope))
}
