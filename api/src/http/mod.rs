//! HTTP plumbing shared by every route: the one error type and its mapping
//! to status codes ([`error`]), API-key authentication ([`auth`]), body
//! reading under a size limit ([`body`]) and the in-flight body budget
//! ([`body_budget`]), bounds on JSON depth and input
//! counts ([`request_limits`]), the in-flight request bound and drain flag
//! ([`concurrency`]), W3C trace context ([`trace`]), the cross-site request
//! check ([`origin`]), TF Serving's `error` member on `:predict` failures
//! ([`tf_errors`]) and the bounded accept loop ([`server`]).

pub mod auth;
pub mod body;
pub mod body_budget;
pub mod concurrency;
pub mod error;
pub mod origin;
pub mod request_limits;
pub mod server;
pub mod tf_errors;
pub mod trace;
