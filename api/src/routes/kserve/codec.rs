//! Reading a KServe v2 inference request, in JSON or with the binary-tensor
//! extension.
//!
//! A JSON request carries each input's `data` inline, flat or nested in the
//! tensor's shape. With the binary extension the body starts with the same
//! JSON (its length in the `Inference-Header-Content-Length` header) and the
//! raw bytes of the inputs that say `parameters.binary_data_size` follow in
//! input order: little-endian numbers, and for `BYTES` each element as a
//! 4-byte little-endian length and its bytes. Binary is what `tritonclient`
//! sends by default and what large tensors and encoded images should use:
//! no base64, no JSON numbers.
//!
//! Everything is validated here — datatype, shape against the element
//! count, value ranges — so what reaches the job path is either encoded
//! image bytes (sniffed there like any upload) or `f32` values in the
//! model's layout.

use std::fmt;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use crate::http::error::ApiError;

/// Header giving the length of the JSON part of a binary request/response.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// Largest integer an `f32` holds exactly: INT32 inputs travel to the
/// worker as `f32`, like every tensor job.
const EXACT_F32_INT: f64 = 16_777_216.0;

/// The element types this server reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    Bytes,
    Fp32,
    Uint8,
    Int32,
}

impl DataType {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        Ok(match s {
            "BYTES" => DataType::Bytes,
            "FP32" => DataType::Fp32,
            "UINT8" => DataType::Uint8,
            "INT32" => DataType::Int32,
            other => {
                return Err(ApiError::InvalidArgument(format!(
                    "datatype {other} is not accepted; send BYTES (encoded images), FP32, UINT8 or INT32"
                )));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Bytes => "BYTES",
            DataType::Fp32 => "FP32",
            DataType::Uint8 => "UINT8",
            DataType::Int32 => "INT32",
        }
    }

    /// Bytes per element in binary form (`None` for variable-length BYTES).
    fn width(self) -> Option<usize> {
        match self {
            DataType::Bytes => None,
            DataType::Uint8 => Some(1),
            DataType::Fp32 | DataType::Int32 => Some(4),
        }
    }
}

/// The JSON part of a request.
#[derive(Deserialize)]
pub struct InferRequest {
    pub id: Option<String>,
    #[serde(default)]
    pub parameters: RequestParameters,
    pub inputs: Vec<RequestInput>,
    #[serde(default)]
    pub outputs: Vec<RequestOutput>,
}

#[derive(Deserialize, Default)]
pub struct RequestParameters {
    /// Every output in binary form unless the output says otherwise.
    #[serde(default)]
    pub binary_data_output: bool,
}

#[derive(Deserialize)]
pub struct RequestInput {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    #[serde(default)]
    pub parameters: InputParameters,
    pub data: Option<FlatData>,
}

#[derive(Deserialize, Default)]
pub struct InputParameters {
    pub binary_data_size: Option<usize>,
}

#[derive(Deserialize)]
pub struct RequestOutput {
    pub name: String,
    #[serde(default)]
    pub parameters: OutputParameters,
}

#[derive(Deserialize, Default, Clone, Copy)]
pub struct OutputParameters {
    pub binary_data: Option<bool>,
    /// The classification extension: the top `n` classes as
    /// `"score:index:label"` strings instead of the tensor.
    pub classification: Option<usize>,
}

/// An input's elements, decoded.
#[derive(Debug, PartialEq)]
pub enum Elements {
    /// Encoded images, one per element.
    Blobs(Vec<Bytes>),
    /// Numbers, row-major, as the `f32` the job path carries.
    Numbers(Vec<f32>),
}

/// One decoded input.
#[derive(Debug)]
pub struct Input {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<usize>,
    pub elements: Elements,
}

/// Splits a request body into its JSON header and binary tail.
pub fn split_body(body: &Bytes, header_length: Option<&str>) -> Result<(Bytes, Bytes), ApiError> {
    let Some(value) = header_length else {
        return Ok((body.clone(), Bytes::new()));
    };
    let n: usize = value
        .trim()
        .parse()
        .map_err(|_| ApiError::InvalidArgument(format!("{HEADER_LENGTH} must be a byte count")))?;
    if n > body.len() {
        return Err(ApiError::InvalidArgument(format!(
            "{HEADER_LENGTH} is {n} but the body has {} bytes",
            body.len()
        )));
    }
    Ok((body.slice(..n), body.slice(n..)))
}

/// Reads a request body: splits it at `header_length` (the
/// [`HEADER_LENGTH`] header, if sent), checks the JSON part's nesting
/// depth and parses it. Returns the request and the binary tail, which
/// [`decode_inputs`] consumes. Pure, so the fuzz target `kserve_binary`
/// runs exactly what the handler runs.
pub fn parse_request(
    body: &Bytes,
    header_length: Option<&str>,
    max_json_depth: usize,
) -> Result<(InferRequest, Bytes), ApiError> {
    let (head, tail) = split_body(body, header_length)?;
    crate::http::request_limits::check_json_depth(&head, max_json_depth)?;
    let request: InferRequest = serde_json::from_slice(&head)
        .map_err(|e| ApiError::InvalidArgument(format!("invalid inference request: {e}")))?;
    Ok((request, tail))
}

/// Decodes every input, taking binary data from `tail` in input order.
pub fn decode_inputs(inputs: Vec<RequestInput>, tail: Bytes) -> Result<Vec<Input>, ApiError> {
    let mut offset = 0usize;
    let mut out = Vec::with_capacity(inputs.len());
    for input in inputs {
        let datatype = DataType::parse(&input.datatype).map_err(|e| prefix(&input.name, e))?;
        let shape = input
            .shape
            .iter()
            .map(|&d| usize::try_from(d).ok().filter(|d| *d > 0))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| bad(&input.name, "every dimension of `shape` must be positive"))?;
        let count = shape
            .iter()
            .try_fold(1usize, |acc, d| acc.checked_mul(*d))
            .ok_or_else(|| bad(&input.name, "`shape` is too large"))?;
        let elements = match (input.parameters.binary_data_size, input.data) {
            (Some(size), None) => {
                let end = offset.checked_add(size).filter(|e| *e <= tail.len());
                let end = end.ok_or_else(|| {
                    bad(
                        &input.name,
                        "binary_data_size runs past the end of the body",
                    )
                })?;
                let chunk = tail.slice(offset..end);
                offset = end;
                from_binary(&input.name, datatype, count, chunk)?
            }
            (None, Some(data)) => from_json(&input.name, datatype, count, data)?,
            (Some(_), Some(_)) => {
                return Err(bad(&input.name, "give `data` or binary data, not both"));
            }
            (None, None) => return Err(bad(&input.name, "no `data` and no binary data")),
        };
        out.push(Input {
            name: input.name,
            datatype,
            shape,
            elements,
        });
    }
    if offset != tail.len() {
        return Err(ApiError::InvalidArgument(format!(
            "{} bytes of binary data follow the inputs that claim them",
            tail.len() - offset
        )));
    }
    Ok(out)
}

fn bad(name: &str, message: &str) -> ApiError {
    ApiError::InvalidArgument(format!("input `{name}`: {message}"))
}

fn prefix(name: &str, e: ApiError) -> ApiError {
    match e {
        ApiError::InvalidArgument(m) => ApiError::InvalidArgument(format!("input `{name}`: {m}")),
        other => other,
    }
}

fn from_binary(
    name: &str,
    datatype: DataType,
    count: usize,
    chunk: Bytes,
) -> Result<Elements, ApiError> {
    let Some(width) = datatype.width() else {
        let mut blobs = Vec::with_capacity(count.min(1024));
        let mut at = 0usize;
        while at < chunk.len() {
            let len_bytes = chunk
                .get(at..at + 4)
                .ok_or_else(|| bad(name, "truncated BYTES element length"))?;
            let len = u32::from_le_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
            let start = at + 4;
            let end = start
                .checked_add(len)
                .filter(|e| *e <= chunk.len())
                .ok_or_else(|| bad(name, "a BYTES element runs past its binary data"))?;
            blobs.push(chunk.slice(start..end));
            at = end;
        }
        if blobs.len() != count {
            return Err(bad(
                name,
                &format!(
                    "`shape` says {count} elements, the data holds {}",
                    blobs.len()
                ),
            ));
        }
        return Ok(Elements::Blobs(blobs));
    };
    // `count` fits in `usize` but `count × width` may not: a shape of 2^62
    // FP32 elements would wrap to 0 bytes and match an empty chunk.
    let needed = count
        .checked_mul(width)
        .ok_or_else(|| bad(name, "`shape` is too large"))?;
    if chunk.len() != needed {
        return Err(bad(
            name,
            &format!(
                "`shape` needs {needed} bytes of {}, binary_data_size is {}",
                datatype.as_str(),
                chunk.len()
            ),
        ));
    }
    let mut numbers = Numbers {
        values: Vec::with_capacity(count),
        ..Numbers::default()
    };
    match datatype {
        DataType::Uint8 => chunk.iter().for_each(|b| numbers.push(*b as f64)),
        DataType::Fp32 => chunk
            .chunks_exact(4)
            .for_each(|c| numbers.push(f32::from_le_bytes(c.try_into().expect("4 bytes")) as f64)),
        DataType::Int32 => chunk
            .chunks_exact(4)
            .for_each(|c| numbers.push(i32::from_le_bytes(c.try_into().expect("4 bytes")) as f64)),
        DataType::Bytes => unreachable!("handled above"),
    }
    numbers_to_f32(name, datatype, numbers)
}

fn from_json(
    name: &str,
    datatype: DataType,
    count: usize,
    data: FlatData,
) -> Result<Elements, ApiError> {
    let elements = match (datatype, data) {
        (DataType::Bytes, FlatData::Strings(s)) => {
            // JSON cannot carry raw bytes: an image in JSON is base64, like
            // the `b64` inputs of the other routes.
            let blobs = s
                .iter()
                .map(|t| crate::intake::encodings::decode_b64(t).map_err(|e| prefix(name, e)))
                .collect::<Result<Vec<_>, _>>()?;
            Elements::Blobs(blobs)
        }
        (DataType::Bytes, FlatData::Numbers(_)) => {
            return Err(bad(name, "BYTES data must be base64 strings"));
        }
        (_, FlatData::Numbers(n)) => numbers_to_f32(name, datatype, n)?,
        (_, FlatData::Strings(_)) => {
            return Err(bad(
                name,
                &format!("{} data must be numbers", datatype.as_str()),
            ));
        }
    };
    let n = match &elements {
        Elements::Blobs(b) => b.len(),
        Elements::Numbers(v) => v.len(),
    };
    if n != count {
        return Err(bad(
            name,
            &format!("`shape` says {count} elements, `data` holds {n}"),
        ));
    }
    Ok(elements)
}

/// The datatypes whose value ranges [`Numbers`] tracks, in its order.
const NUMERIC: [DataType; 3] = [DataType::Fp32, DataType::Uint8, DataType::Int32];

/// Whether `v` is a valid value of `datatype`.
fn fits(datatype: DataType, v: f64) -> bool {
    match datatype {
        DataType::Fp32 => v.is_finite() && (v as f32).is_finite(),
        DataType::Uint8 => v.fract() == 0.0 && (0.0..=255.0).contains(&v),
        DataType::Int32 => v.fract() == 0.0 && v.abs() <= EXACT_F32_INT,
        DataType::Bytes => false,
    }
}

/// Numbers narrowed to the `f32` the job path carries as they are read,
/// 4 bytes each. The datatype may come after `data` in the JSON, so the
/// first value each numeric datatype would refuse is noted on the way and
/// judged once the datatype is known.
#[derive(Debug, Default)]
pub struct Numbers {
    values: Vec<f32>,
    first_bad: [Option<f64>; 3],
}

impl Numbers {
    fn push(&mut self, v: f64) {
        for (slot, datatype) in self.first_bad.iter_mut().zip(NUMERIC) {
            if slot.is_none() && !fits(datatype, v) {
                *slot = Some(v);
            }
        }
        self.values.push(v as f32);
    }
}

/// Range checks by datatype, then the values.
fn numbers_to_f32(name: &str, datatype: DataType, n: Numbers) -> Result<Elements, ApiError> {
    let bad = NUMERIC
        .iter()
        .position(|d| *d == datatype)
        .map_or(Some(f64::NAN), |i| n.first_bad[i]);
    if let Some(v) = bad {
        let range = match datatype {
            DataType::Uint8 => "integers 0..=255",
            DataType::Int32 => "integers within ±16777216",
            _ => "finite 32-bit floats",
        };
        return Err(self::bad(
            name,
            &format!("{} values must be {range}; got {v}", datatype.as_str()),
        ));
    }
    Ok(Elements::Numbers(n.values))
}

/// An input's `data`, flattened as it is read: nested lists of numbers or
/// of strings, never both. Read by a streaming visitor so a large tensor
/// is not first built as a tree of `serde_json::Value`s (32 bytes and more
/// per number) nor as `f64`s: each number costs 4 bytes.
#[derive(Debug)]
pub enum FlatData {
    Numbers(Numbers),
    Strings(Vec<String>),
}

impl<'de> Deserialize<'de> for FlatData {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut acc = Flat::default();
        d.deserialize_any(FlatVisitor(&mut acc))?;
        Ok(match acc {
            Flat::Strings(s) => FlatData::Strings(s),
            Flat::Numbers(n) => FlatData::Numbers(n),
            Flat::Empty => FlatData::Numbers(Numbers::default()),
        })
    }
}

#[derive(Default)]
enum Flat {
    #[default]
    Empty,
    Numbers(Numbers),
    Strings(Vec<String>),
}

struct FlatVisitor<'a>(&'a mut Flat);

impl<'de> de::DeserializeSeed<'de> for FlatVisitor<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl FlatVisitor<'_> {
    fn number<E: de::Error>(self, v: f64) -> Result<(), E> {
        match self.0 {
            Flat::Empty => {
                let mut n = Numbers::default();
                n.push(v);
                *self.0 = Flat::Numbers(n);
            }
            Flat::Numbers(n) => n.push(v),
            Flat::Strings(_) => return Err(E::custom("`data` mixes strings and numbers")),
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for FlatVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of numbers or strings, flat or nested")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(FlatVisitor(&mut *self.0))?.is_some() {}
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.number(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.number(v as f64)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.number(v as f64)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        match self.0 {
            Flat::Empty => *self.0 = Flat::Strings(vec![v.to_owned()]),
            Flat::Strings(s) => s.push(v.to_owned()),
            Flat::Numbers(_) => return Err(E::custom("`data` mixes strings and numbers")),
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
