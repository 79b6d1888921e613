//! Schemas of bodies that are not JSON — an image, a model file, binary
//! tensor data, an HTML page — so the OpenAPI document types them
//! (`type: string`, `format: binary` for bytes) instead of leaving them
//! untyped. Documentation only: handlers send bytes and strings.

/// Bytes of a binary body (an image, a model file, binary tensor data), as
/// the document names them: `type: string, format: binary`.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct Binary(Vec<u8>);

/// An HTML page.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Html(String);
