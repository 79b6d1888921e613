//! Compatibility layer for GCS emulators, used only with a custom GCS endpoint.
//!
//! `object_store` talks to GCS through the XML API and is strict in ways the
//! real service always satisfies but `gcp-storage-emulator` does not:
//!
//! * it percent-encodes every non-alphanumeric byte of bucket and key
//!   (`inferq-in` becomes `inferq%2Din`), while the emulator routes on the
//!   raw path and only accepts `[-.\w]` in bucket names. Decoding
//!   percent-encoded *unreserved* characters (letters, digits, `-`, `.`,
//!   `_`, `~`) gives an equivalent URL (RFC 3986 §6.2.2.2), so the path is
//!   normalised that way; `%2F` and everything else stays encoded.
//! * it requires `ETag` and `Last-Modified` on downloads and an `ETag` on
//!   uploads; the emulator sends neither. Missing ones are filled in: the
//!   ETag from the `x-goog-hash` MD5 when present, else a fixed placeholder,
//!   and `Last-Modified` from `Date`.
//!
//! * it uploads with `PUT /bucket/key`, and the emulator parses any body sent
//!   as `application/json` as JSON before storing it, then fails on the
//!   parsed object (HTTP 500). It skips that parsing when the query names an
//!   `upload_id`, so JSON uploads get a dummy `upload_id` parameter, which
//!   its XML upload handler ignores.
//!
//! * it lists with the XML API (`GET /bucket?list-type=2&prefix=…`), which
//!   the emulator does not implement (501). Such a request is sent to the
//!   emulator's JSON API (`GET /storage/v1/b/bucket/o?prefix=…`) instead and
//!   the answer rewritten as the XML `ListBucketResult` object_store reads.
//!
//! The layer is installed only for a custom GCS endpoint over plain `http://`
//! (`--gcs-endpoint`/`STORAGE_EMULATOR_HOST`): emulators. An `https://`
//! endpoint (e.g. a private Google endpoint) gets the stock client, because
//! the real service would read `upload_id` as a resumable-upload session.

use async_trait::async_trait;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpService,
    ReqwestConnector,
};
use object_store::{ClientOptions, HeaderValue};

/// Query parameter value that stops the emulator from JSON-parsing an upload.
const JSON_UPLOAD_MARKER: &str = "inferq-emulator-compat";

/// Builds emulator-compatible clients on top of `object_store`'s reqwest connector.
#[derive(Debug, Default)]
pub(crate) struct EmulatorConnector;

impl HttpConnector for EmulatorConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(EmulatorService { inner }))
    }
}

#[derive(Debug)]
struct EmulatorService {
    inner: HttpClient,
}

#[async_trait]
impl HttpService for EmulatorService {
    async fn call(&self, mut req: HttpRequest) -> Result<HttpResponse, HttpError> {
        if let Some(json_list) = xml_list_as_json(&req) {
            return self.list(req, json_list).await;
        }
        let uri = req.uri();
        let path = uri.path();
        let normalised = decode_unreserved(path);
        let json_upload = req.method() == "PUT"
            && req
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("application/json"));
        let mut query = uri.query().map(str::to_string);
        if json_upload && !query.as_deref().unwrap_or("").contains("upload_id") {
            query = Some(match query {
                Some(q) => format!("{q}&upload_id={JSON_UPLOAD_MARKER}"),
                None => format!("upload_id={JSON_UPLOAD_MARKER}"),
            });
        }
        if normalised != path || query.as_deref() != uri.query() {
            let rebuilt = match query {
                Some(q) => format!("{normalised}?{q}"),
                None => normalised,
            };
            let mut parts = uri.clone().into_parts();
            parts.path_and_query = Some(
                rebuilt
                    .parse()
                    .map_err(|e| HttpError::new(HttpErrorKind::Request, e))?,
            );
            *req.uri_mut() = parts
                .try_into()
                .map_err(|e| HttpError::new(HttpErrorKind::Request, e))?;
        }
        let mut resp = self.inner.execute(req).await?;
        if resp.status().is_success() {
            let headers = resp.headers_mut();
            if !headers.contains_key("etag") {
                let etag = headers
                    .get("x-goog-hash")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.split(',').find_map(|h| h.trim().strip_prefix("md5=")))
                    .map(|md5| format!("\"md5-{md5}\""))
                    .unwrap_or_else(|| "\"emulator\"".to_string());
                if let Ok(v) = HeaderValue::from_str(&etag) {
                    headers.insert("etag", v);
                }
            }
            if !headers.contains_key("last-modified") {
                let date = headers
                    .get("date")
                    .cloned()
                    .unwrap_or_else(|| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"));
                headers.insert("last-modified", date);
            }
        }
        Ok(resp)
    }
}

impl EmulatorService {
    /// Runs an XML list request through the JSON API (see the module docs).
    async fn list(
        &self,
        mut req: HttpRequest,
        json_path: String,
    ) -> Result<HttpResponse, HttpError> {
        let mut parts = req.uri().clone().into_parts();
        parts.path_and_query = Some(
            json_path
                .parse()
                .map_err(|e| HttpError::new(HttpErrorKind::Request, e))?,
        );
        *req.uri_mut() = parts
            .try_into()
            .map_err(|e| HttpError::new(HttpErrorKind::Request, e))?;
        let resp = self.inner.execute(req).await?;
        if !resp.status().is_success() {
            return Ok(resp);
        }
        let (parts, body) = resp.into_parts();
        let json = body.bytes().await?;
        let xml = list_xml(&json)
            .map_err(|e| HttpError::new(HttpErrorKind::Decode, std::io::Error::other(e)))?;
        Ok(HttpResponse::from_parts(parts, xml.into()))
    }
}

/// For `GET /bucket?list-type=2&…`, the JSON API path and query to ask instead.
fn xml_list_as_json(req: &HttpRequest) -> Option<String> {
    if req.method() != "GET" {
        return None;
    }
    let uri = req.uri();
    let bucket = uri.path().trim_start_matches('/');
    if bucket.is_empty() || bucket.contains('/') {
        return None;
    }
    let query = uri.query()?;
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if !pairs.iter().any(|(k, v)| k == "list-type" && v == "2") {
        return None;
    }
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in &pairs {
        match k.as_str() {
            "prefix" => out.append_pair("prefix", v),
            "delimiter" => out.append_pair("delimiter", v),
            "continuation-token" => out.append_pair("pageToken", v),
            "max-keys" => out.append_pair("maxResults", v),
            "start-after" => out.append_pair("startOffset", v),
            _ => &mut out,
        };
    }
    Some(format!(
        "/storage/v1/b/{}/o?{}",
        decode_unreserved(bucket),
        out.finish()
    ))
}

/// A JSON API object list as the XML API's `ListBucketResult`.
fn list_xml(json: &[u8]) -> Result<String, String> {
    let v: serde_json::Value = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult>");
    for item in v["items"].as_array().into_iter().flatten() {
        let name = item["name"].as_str().ok_or("object without a name")?;
        let size = match &item["size"] {
            serde_json::Value::String(s) => s.parse::<u64>().unwrap_or(0),
            n => n.as_u64().unwrap_or(0),
        };
        let updated = item["updated"]
            .as_str()
            .or(item["timeCreated"].as_str())
            .unwrap_or("1970-01-01T00:00:00Z");
        xml.push_str(&format!(
            "<Contents><Key>{}</Key><Size>{size}</Size><LastModified>{}</LastModified></Contents>",
            esc(name),
            esc(updated)
        ));
    }
    for p in v["prefixes"].as_array().into_iter().flatten() {
        if let Some(p) = p.as_str() {
            xml.push_str(&format!(
                "<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>",
                esc(p)
            ));
        }
    }
    if let Some(token) = v["nextPageToken"].as_str() {
        xml.push_str(&format!(
            "<NextContinuationToken>{}</NextContinuationToken>",
            esc(token)
        ));
    }
    xml.push_str("</ListBucketResult>");
    Ok(xml)
}

/// Decodes `%XX` escapes of unreserved characters; leaves every other escape alone.
fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = hex_byte(bytes[i + 1], bytes[i + 2])
            && (b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
        {
            out.push(b as char);
            i += 3;
            continue;
        }
        // Copy one UTF-8 character (paths are ASCII after encoding, but be safe).
        let ch_len = path[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&path[i..i + ch_len]);
        i += ch_len;
    }
    out
}

fn hex_byte(hi: u8, lo: u8) -> Option<u8> {
    let d = |c: u8| (c as char).to_digit(16);
    Some((d(hi)? * 16 + d(lo)?) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unreserved_escapes_are_decoded() {
        assert_eq!(
            decode_unreserved("/inferq%2Din/images%2Fcat%2Ebin"),
            "/inferq-in/images%2Fcat.bin"
        );
        assert_eq!(decode_unreserved("/b/a%20b%25c%7E"), "/b/a%20b%25c~");
        assert_eq!(decode_unreserved("/b/x%2"), "/b/x%2");
        assert_eq!(decode_unreserved("/b/x%zz"), "/b/x%zz");
    }

    #[test]
    fn xml_lists_become_json_lists_and_back() {
        let request = |uri: &str| {
            let mut r = HttpRequest::new(bytes::Bytes::new().into());
            *r.uri_mut() = uri.parse().unwrap();
            r
        };
        let req =
            request("http://127.0.0.1:1/photos?list-type=2&prefix=2026%2F&continuation-token=t1");
        assert_eq!(
            xml_list_as_json(&req).unwrap(),
            "/storage/v1/b/photos/o?prefix=2026%2F&pageToken=t1"
        );
        let get = request("http://127.0.0.1:1/photos/a.png");
        assert!(xml_list_as_json(&get).is_none());
        let xml = list_xml(
            br#"{"items": [{"name": "2026/a&b.png", "size": "12", "updated": "2026-11-29T10:00:00Z"}],
                 "nextPageToken": "n2"}"#,
        )
        .unwrap();
        assert!(
            xml.contains("<Key>2026/a&amp;b.png</Key><Size>12</Size>"),
            "{xml}"
        );
        assert!(xml.contains("<NextContinuationToken>n2</NextContinuationToken>"));
    }
}
