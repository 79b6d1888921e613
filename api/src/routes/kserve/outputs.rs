//! The tensors a model answers with under the v2 protocol, and how they are
//! built from finished jobs and written back (JSON or binary).
//!
//! InferQ's workers turn raw network outputs into answers (top-k classes,
//! keypoints in original-image pixels, boxes, an output image), and a v2
//! client reads tensors. Each model kind therefore has a fixed set of named
//! output tensors, listed in the model metadata:
//!
//! | kind | output | datatype | shape |
//! |---|---|---|---|
//! | classification | `probabilities` (`scores` without softmax) | FP32 | `[N, classes]` |
//! | embedding | `embedding` | FP32 | `[N, dims]` |
//! | keypoints | `keypoints`: x, y, score per point, manifest order | FP32 | `[N, points, 3]` |
//! | keypoints (multi-person) | `persons`: x1, y1, x2, y2, score, then x, y, score per point | FP32 | `[N, max, 5 + 3 × points]` |
//! | keypoints (multi-person) | `person_count` | INT32 | `[N]` |
//! | detection | `detections`: x1, y1, x2, y2, score, class | FP32 | `[N, max, 6]` |
//! | detection | `detection_count` | INT32 | `[N]` |
//! | image | `image`: the encoded output image | BYTES | `[N]` |
//! | image (one channel) | `peaks`: x, y, value per peak, strongest first | FP32 | `[N, max, 3]` |
//! | image (one channel) | `peak_count` | INT32 | `[N]` |
//! | tensor | the network's outputs, by name | FP32 | `[N, …]` |
//!
//! Detections, persons and peaks are padded with zero rows to the largest count in
//! the request; keypoints below the manifest's threshold are zeros. For a
//! multi-person model `keypoints` holds the best person's points.
//! Classifiers also speak the classification extension: an output asked
//! for with `parameters.classification = k` is BYTES `[N, k]` of
//! `"score:index:label"`.

use inferq_backends::repository::ModelEntry;
use inferq_core::manifest::{ModelKind, ModelManifest};
use inferq_core::prediction::Prediction;
use serde_json::{Value, json};

use crate::http::error::ApiError;

/// One output as listed in the model metadata.
pub struct OutputMeta {
    pub name: String,
    pub datatype: &'static str,
    pub shape: Vec<i64>,
}

/// The name of a classifier's score output.
fn class_output(m: &ModelManifest) -> &'static str {
    if m.output.softmax {
        "probabilities"
    } else {
        "scores"
    }
}

/// The outputs a model version answers with.
pub fn outputs(entry: &ModelEntry) -> Vec<OutputMeta> {
    let m = &entry.manifest;
    let meta = |name: &str, datatype, shape: Vec<i64>| OutputMeta {
        name: name.to_owned(),
        datatype,
        shape,
    };
    match m.kind {
        ModelKind::Classification => {
            let classes = match entry.labels.len() {
                0 => -1,
                n => n as i64,
            };
            vec![meta(class_output(m), "FP32", vec![-1, classes])]
        }
        ModelKind::Embedding => vec![meta("embedding", "FP32", vec![-1, -1])],
        ModelKind::Keypoints => {
            let points = match m.output.keypoints.len() {
                0 => -1,
                n => n as i64,
            };
            let mut outputs = vec![meta("keypoints", "FP32", vec![-1, points, 3])];
            if m.output.persons.is_some() {
                let row = if points < 0 { -1 } else { 5 + 3 * points };
                outputs.push(meta("persons", "FP32", vec![-1, -1, row]));
                outputs.push(meta("person_count", "INT32", vec![-1]));
            }
            outputs
        }
        ModelKind::Detection => vec![
            meta("detections", "FP32", vec![-1, -1, 6]),
            meta("detection_count", "INT32", vec![-1]),
        ],
        ModelKind::Image => {
            let mut outputs = vec![meta("image", "BYTES", vec![-1])];
            if m.output.channels == Some(1) {
                outputs.push(meta("peaks", "FP32", vec![-1, -1, 3]));
                outputs.push(meta("peak_count", "INT32", vec![-1]));
            }
            outputs
        }
        ModelKind::Tensor => m
            .output
            .names
            .iter()
            .map(|n| meta(n, "FP32", vec![-1, -1]))
            .collect(),
    }
}

/// What the client asked for: an output by name, in which form.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub name: String,
    pub binary: bool,
    pub classification: Option<usize>,
}

/// Top-k each job must compute so that every wanted output can be built:
/// all classes for the score tensor, else the largest `classification`.
pub fn top_k_needed(entry: &ModelEntry, wanted: &[Wanted]) -> Option<usize> {
    if entry.manifest.kind != ModelKind::Classification {
        return None;
    }
    let all = match entry.labels.len() {
        0 => crate::routes::submit::MAX_TOP_K,
        n => n.min(crate::routes::submit::MAX_TOP_K),
    };
    wanted.iter().map(|w| w.classification.unwrap_or(all)).max()
}

/// Checks the requested names against the model's outputs; no request
/// means every output.
pub fn resolve(
    entry: &ModelEntry,
    requested: Vec<super::codec::RequestOutput>,
    binary_default: bool,
) -> Result<Vec<Wanted>, ApiError> {
    let available = outputs(entry);
    if requested.is_empty() {
        return Ok(available
            .into_iter()
            .map(|o| Wanted {
                name: o.name,
                binary: binary_default,
                classification: None,
            })
            .collect());
    }
    let is_classifier = entry.manifest.kind == ModelKind::Classification;
    requested
        .into_iter()
        .map(|r| {
            // A tensor model lists nothing when its manifest names no
            // outputs; its outputs are then only known from the results.
            let known = available.iter().any(|o| o.name == r.name)
                || (entry.manifest.kind == ModelKind::Tensor && available.is_empty());
            if !known {
                let names: Vec<&str> = available.iter().map(|o| o.name.as_str()).collect();
                return Err(ApiError::InvalidArgument(format!(
                    "unknown output `{}`; this model has {names:?}",
                    r.name
                )));
            }
            if let Some(k) = r.parameters.classification
                && (!is_classifier || !(1..=crate::routes::submit::MAX_TOP_K).contains(&k))
            {
                return Err(ApiError::InvalidArgument(format!(
                    "output `{}`: `classification` needs a classifier and 1..={}",
                    r.name,
                    crate::routes::submit::MAX_TOP_K
                )));
            }
            Ok(Wanted {
                name: r.name,
                binary: r.parameters.binary_data.unwrap_or(binary_default),
                classification: r.parameters.classification,
            })
        })
        .collect()
}

/// An output tensor ready to be written.
#[derive(Debug, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Data,
    pub binary: bool,
}

#[derive(Debug, PartialEq)]
pub enum Data {
    Fp32(Vec<f32>),
    Int32(Vec<i32>),
    Bytes(Vec<Vec<u8>>),
}

impl Data {
    fn datatype(&self) -> &'static str {
        match self {
            Data::Fp32(_) => "FP32",
            Data::Int32(_) => "INT32",
            Data::Bytes(_) => "BYTES",
        }
    }
}

/// One job's answer: its prediction and, for image models, the image.
pub struct Answer {
    pub prediction: Prediction,
    pub image: Option<Vec<u8>>,
}

/// Builds each wanted output from the jobs' answers, in request order.
pub fn build(
    entry: &ModelEntry,
    answers: &[Answer],
    wanted: &[Wanted],
) -> Result<Vec<Tensor>, ApiError> {
    wanted
        .iter()
        .map(|w| {
            let (shape, data) = tensor(entry, answers, w)?;
            Ok(Tensor {
                name: w.name.clone(),
                shape,
                data,
                binary: w.binary,
            })
        })
        .collect()
}

fn mismatch() -> ApiError {
    ApiError::Internal("a job's result does not match its model's kind".into())
}

fn tensor(
    entry: &ModelEntry,
    answers: &[Answer],
    w: &Wanted,
) -> Result<(Vec<usize>, Data), ApiError> {
    let n = answers.len();
    let m = &entry.manifest;
    match m.kind {
        ModelKind::Classification => {
            let mut rows = Vec::with_capacity(n);
            for a in answers {
                let Prediction::Classification { top_k } = &a.prediction else {
                    return Err(mismatch());
                };
                rows.push(top_k);
            }
            if let Some(k) = w.classification {
                let mut out = Vec::with_capacity(n * k);
                for row in &rows {
                    for i in 0..k {
                        out.push(
                            match row.get(i) {
                                Some(c) => format!("{}:{}:{}", c.probability, c.index, c.label),
                                None => String::new(),
                            }
                            .into_bytes(),
                        );
                    }
                }
                return Ok((vec![n, k], Data::Bytes(out)));
            }
            // Every class was asked for, so the indices cover 0..classes.
            let classes = rows.iter().map(|r| r.len()).max().unwrap_or(0);
            let mut out = vec![0f32; n * classes];
            for (b, row) in rows.iter().enumerate() {
                for c in row.iter().filter(|c| c.index < classes) {
                    out[b * classes + c.index] = c.probability;
                }
            }
            Ok((vec![n, classes], Data::Fp32(out)))
        }
        ModelKind::Embedding => {
            let mut out = Vec::new();
            let mut dims = None;
            for a in answers {
                let Prediction::Embedding { values, .. } = &a.prediction else {
                    return Err(mismatch());
                };
                if *dims.get_or_insert(values.len()) != values.len() {
                    return Err(mismatch());
                }
                out.extend_from_slice(values);
            }
            Ok((vec![n, dims.unwrap_or(0)], Data::Fp32(out)))
        }
        ModelKind::Keypoints if matches!(w.name.as_str(), "persons" | "person_count") => {
            persons_tensor(m, answers, &w.name).ok_or_else(mismatch)
        }
        ModelKind::Keypoints => {
            let names = &m.output.keypoints;
            let mut out = vec![0f32; n * names.len() * 3];
            for (b, a) in answers.iter().enumerate() {
                let Prediction::Keypoints { keypoints, .. } = &a.prediction else {
                    return Err(mismatch());
                };
                for k in keypoints {
                    if let Some(i) = names.iter().position(|p| *p == k.name) {
                        let at = (b * names.len() + i) * 3;
                        out[at..at + 3].copy_from_slice(&[k.x, k.y, k.score]);
                    }
                }
            }
            Ok((vec![n, names.len(), 3], Data::Fp32(out)))
        }
        ModelKind::Detection => {
            let mut lists = Vec::with_capacity(n);
            for a in answers {
                let Prediction::Detection { detections } = &a.prediction else {
                    return Err(mismatch());
                };
                lists.push(detections);
            }
            if w.name == "detection_count" {
                let counts = lists.iter().map(|d| d.len() as i32).collect();
                return Ok((vec![n], Data::Int32(counts)));
            }
            let max = lists.iter().map(|d| d.len()).max().unwrap_or(0);
            let mut out = vec![0f32; n * max * 6];
            for (b, list) in lists.iter().enumerate() {
                for (i, d) in list.iter().enumerate() {
                    let at = (b * max + i) * 6;
                    let row = [
                        d.bbox.x1,
                        d.bbox.y1,
                        d.bbox.x2,
                        d.bbox.y2,
                        d.score,
                        d.class as f32,
                    ];
                    out[at..at + 6].copy_from_slice(&row);
                }
            }
            Ok((vec![n, max, 6], Data::Fp32(out)))
        }
        ModelKind::Image if matches!(w.name.as_str(), "peaks" | "peak_count") => {
            peaks_tensor(answers, &w.name).ok_or_else(mismatch)
        }
        ModelKind::Image => {
            let images = answers
                .iter()
                .map(|a| a.image.clone().ok_or_else(mismatch))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((vec![n], Data::Bytes(images)))
        }
        ModelKind::Tensor => {
            let mut out = Vec::new();
            let mut inner: Option<Vec<usize>> = None;
            for a in answers {
                let Prediction::Tensor { outputs } = &a.prediction else {
                    return Err(mismatch());
                };
                let raw = outputs.iter().find(|o| o.name == w.name).ok_or_else(|| {
                    ApiError::InvalidArgument(format!("the model has no output `{}`", w.name))
                })?;
                // Each job ran with a batch of one: drop that axis.
                let dims: Vec<usize> = raw.shape.iter().skip(1).map(|d| *d as usize).collect();
                if *inner.get_or_insert_with(|| dims.clone()) != dims {
                    return Err(mismatch());
                }
                out.extend_from_slice(&raw.data);
            }
            let shape = std::iter::once(n)
                .chain(inner.unwrap_or_default())
                .collect();
            Ok((shape, Data::Fp32(out)))
        }
    }
}

/// The response: JSON alone, or the JSON header followed by the binary
/// outputs (then `Some(header length)`).
pub fn encode(head: Value, tensors: Vec<Tensor>) -> (Vec<u8>, Option<usize>) {
    let mut tail = Vec::new();
    let mut outputs = Vec::with_capacity(tensors.len());
    for t in tensors {
        let mut o = json!({
            "name": t.name,
            "datatype": t.data.datatype(),
            "shape": t.shape,
        });
        if t.binary {
            let before = tail.len();
            write_binary(&t.data, &mut tail);
            o["parameters"] = json!({ "binary_data_size": tail.len() - before });
        } else {
            o["data"] = json_data(t.data);
        }
        outputs.push(o);
    }
    let mut head = head;
    head["outputs"] = Value::Array(outputs);
    let mut body = serde_json::to_vec(&head).expect("response serialises");
    if tail.is_empty() {
        return (body, None);
    }
    let header_len = body.len();
    body.extend_from_slice(&tail);
    (body, Some(header_len))
}

fn write_binary(data: &Data, out: &mut Vec<u8>) {
    match data {
        Data::Fp32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Data::Int32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Data::Bytes(v) => {
            for b in v {
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(b);
            }
        }
    }
}

/// JSON data: numbers, or strings for BYTES — text when it is UTF-8 (class
/// strings), base64 otherwise (images).
fn json_data(data: Data) -> Value {
    use base64::Engine;
    match data {
        Data::Fp32(v) => json!(v),
        Data::Int32(v) => json!(v),
        Data::Bytes(v) => Value::Array(
            v.into_iter()
                .map(|b| match String::from_utf8(b) {
                    Ok(s) => Value::String(s),
                    Err(e) => Value::String(
                        base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
                    ),
                })
                .collect(),
        ),
    }
}

/// The `peaks` (or `peak_count`) tensor of a heatmap model; `None` when
/// an answer is not an image.
fn peaks_tensor(answers: &[Answer], name: &str) -> Option<(Vec<usize>, Data)> {
    let lists = answers
        .iter()
        .map(|a| match &a.prediction {
            Prediction::Image { peaks, .. } => Some(peaks),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    let n = lists.len();
    if name == "peak_count" {
        let counts = lists.iter().map(|p| p.len() as i32).collect();
        return Some((vec![n], Data::Int32(counts)));
    }
    let max = lists.iter().map(|p| p.len()).max().unwrap_or(0);
    let mut out = vec![0f32; n * max * 3];
    for (b, peaks) in lists.iter().enumerate() {
        for (i, p) in peaks.iter().enumerate() {
            let at = (b * max + i) * 3;
            out[at..at + 3].copy_from_slice(&[p.x, p.y, p.value]);
        }
    }
    Some((vec![n, max, 3], Data::Fp32(out)))
}

/// The `persons` (or `person_count`) tensor of a multi-person pose model;
/// `None` when an answer carries no person list.
fn persons_tensor(m: &ModelManifest, answers: &[Answer], name: &str) -> Option<(Vec<usize>, Data)> {
    let lists = answers
        .iter()
        .map(|a| match &a.prediction {
            Prediction::Keypoints {
                persons: Some(p), ..
            } => Some(p),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    let n = lists.len();
    if name == "person_count" {
        let counts = lists.iter().map(|p| p.len() as i32).collect();
        return Some((vec![n], Data::Int32(counts)));
    }
    let names = &m.output.keypoints;
    let row = 5 + 3 * names.len();
    let max = lists.iter().map(|p| p.len()).max().unwrap_or(0);
    let mut out = vec![0f32; n * max * row];
    for (b, people) in lists.iter().enumerate() {
        for (i, person) in people.iter().enumerate() {
            let at = (b * max + i) * row;
            if let Some(bb) = person.bbox {
                out[at..at + 4].copy_from_slice(&[bb.x1, bb.y1, bb.x2, bb.y2]);
            }
            out[at + 4] = person.score;
            for k in &person.keypoints {
                if let Some(j) = names.iter().position(|p| *p == k.name) {
                    let pt = at + 5 + 3 * j;
                    out[pt..pt + 3].copy_from_slice(&[k.x, k.y, k.score]);
                }
            }
        }
    }
    Some((vec![n, max, row], Data::Fp32(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_json_encodings() {
        let tensors = vec![
            Tensor {
                name: "a".into(),
                shape: vec![2],
                data: Data::Fp32(vec![1.0, 2.5]),
                binary: true,
            },
            Tensor {
                name: "b".into(),
                shape: vec![1, 2],
                data: Data::Bytes(vec![b"0.9:3:cat".to_vec(), vec![0xff]]),
                binary: false,
            },
        ];
        let (body, header) = encode(json!({"model_name": "m"}), tensors);
        let header = header.unwrap();
        let head: Value = serde_json::from_slice(&body[..header]).unwrap();
        assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], 8);
        assert_eq!(head["outputs"][1]["data"], json!(["0.9:3:cat", "/w=="]));
        assert_eq!(&body[header..header + 4], &1.0f32.to_le_bytes());
        assert_eq!(body.len(), header + 8);
    }
}
