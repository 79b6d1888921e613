//! Turning a request into jobs, shared by every route that submits: the
//! encodings a job arrives in ([`encodings`]), JSON tensors read straight
//! into a flat buffer ([`json_tensor`]), `Idempotency-Key` handling
//! ([`idempotency`]), models named by storage reference ([`model_uri`]) and
//! the synchronous protocols' "submit a set, wait for
//! all" ([`wait_all`]) and the TF Serving / Vertex instance shapes
//! ([`tf_instance`]).

pub mod encodings;
pub mod idempotency;
pub mod json_tensor;
pub mod model_uri;
pub mod tf_instance;
pub mod wait_all;
