//! HTTP plumbing shared by every route: the one error type and its mapping
//! to status codes ([`error`]), API-key authentication ([`auth`]), body
//! reading under a size limit ([`body`]), compressed bodies
//! ([`content_coding`]) and the in-flight body budget ([`body_budget`]), bounds on JSON depth and input
//! counts ([`request_limits`]), the in-flight request bound and drain flag
//! ([`concurrency`]), W3C trace context ([`trace`]), the cross-site request
//! check ([`origin`]), the `error` member of KServe v2 and TF Serving
//! failures ([`error_member`]), the document's schemas of non-JSON bodies
//! ([`media`]) and the bounded accept loop ([`server`]).

pub mod auth;
pub mod body;
pub mod body_budget;
pub mod concurrency;
pub mod content_coding;
pub mod error;
pub mod error_member;
pub mod media;
pub mod origin;
pub mod request_limits;
pub mod server;
pub mod trace;
