//! The manifest `models import` writes: inferred from the signature the conversion script
//! reports (input name, dtype, layout, size; output names and shapes) and the flags for what a
//! model file does not say (kind, mean/std, labels). Rules in docs/models.md, "How the manifest
//! is inferred". Kept apart from the command so the rules can be tested without Python.

use serde_json::Value;

/// Labels file name inside a version directory.
pub const LABELS_FILE: &str = "labels.txt";

/// What the model answers, when the signature alone does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Kind {
    Classification,
    Keypoints,
    Detection,
    Image,
    Embedding,
    Tensor,
}

impl Kind {
    /// The manifest's `kind` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Classification => "classification",
            Kind::Keypoints => "keypoints",
            Kind::Detection => "detection",
            Kind::Image => "image",
            Kind::Embedding => "embedding",
            Kind::Tensor => "tensor",
        }
    }
}

impl std::str::FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        [
            Kind::Classification,
            Kind::Keypoints,
            Kind::Detection,
            Kind::Image,
            Kind::Embedding,
            Kind::Tensor,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| {
            format!(
                "unknown kind `{s}` (classification, keypoints, detection, image, embedding, tensor)"
            )
        })
    }
}

/// The inferred manifest and what the reader should know about it.
#[derive(Debug, Clone)]
pub struct Inferred {
    /// `model.toml`.
    pub text: String,
    /// Remarks worth printing or logging (e.g. which of several outputs is read).
    pub notes: Vec<String>,
}

/// The flags that shape the manifest.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub kind: Option<Kind>,
    pub mean: Option<[f32; 3]>,
    pub std: Option<[f32; 3]>,
    /// The source's file name, for the description.
    pub source_name: String,
}

fn quote(s: &str) -> String {
    // A JSON string is a valid TOML basic string (same escapes; \u00XX for controls).
    serde_json::to_string(s).unwrap_or_default()
}

fn floats(v: [f32; 3]) -> String {
    format!("[{:?}, {:?}, {:?}]", v[0], v[1], v[2])
}

/// The `model.toml` for the converted model: the input from the signature, the kind from the
/// flag or the outputs, preprocessing from the flags (stretch resize; mean 0, std 1 unless
/// given). See docs/models.md, "Importing TensorFlow-family models".
pub fn manifest_text(a: &Flags, s: &Value, labels: Option<usize>) -> Result<Inferred, String> {
    let refuse = |m: String| Err(m);
    let input = &s["input"];
    let dtype = input["dtype"].as_str().unwrap_or_default();
    if dtype != "float32" && (a.mean.is_some() || a.std.is_some()) {
        return refuse(format!(
            "--mean/--std apply to float32 inputs; input `{}` is {dtype} and gets raw 0..255 values",
            input["name"].as_str().unwrap_or_default()
        ));
    }
    let outputs: Vec<&Value> = s["outputs"].as_array().into_iter().flatten().collect();
    let shape_of = |o: &Value| -> Vec<u64> {
        o["shape"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_u64)
            .collect()
    };
    let classes = match outputs[..] {
        [o] if shape_of(o).len() == 2 && shape_of(o)[1] >= 2 => Some(shape_of(o)[1]),
        _ => None,
    };
    let kind = a.kind.unwrap_or(if classes.is_some() {
        Kind::Classification
    } else {
        Kind::Tensor
    });
    let source = &a.source_name;
    let mut t = format!(
        "# Written by `inferq models import` from {source} ({format}); edit as needed.\n\
         kind = \"{kind}\"\n\
         description = {desc}\n\n\
         [input]\nname = {name}\ndtype = \"{dtype}\"\nlayout = {layout}\nwidth = {w}\nheight = {h}\ncolor = \"rgb\"\n\n\
         [preprocess]\nresize = \"stretch\"\nfilter = \"bilinear\"\n",
        format = s["format"].as_str().unwrap_or("?"),
        kind = kind.as_str(),
        desc = quote(&format!(
            "imported from {source} ({})",
            s["format"].as_str().unwrap_or("?")
        )),
        name = quote(input["name"].as_str().unwrap_or_default()),
        layout = input["layout"],
        w = input["width"],
        h = input["height"],
    );
    if dtype == "float32" {
        t += &format!(
            "mean = {}\nstd = {}\n",
            floats(a.mean.unwrap_or([0.0; 3])),
            floats(a.std.unwrap_or([1.0; 3]))
        );
    }
    t += "\n[output]\n";
    let first = match outputs.first() {
        Some(o) => *o,
        None => return refuse("the model has no outputs".into()),
    };
    let first_name = quote(first["name"].as_str().unwrap_or_default());
    if labels.is_some() && !matches!(kind, Kind::Classification | Kind::Detection) {
        return refuse(format!(
            "--labels applies to classification and detection models, not {}",
            kind.as_str()
        ));
    }
    let mut notes = Vec::new();
    if kind != Kind::Tensor && outputs.len() > 1 {
        notes.push(format!(
            "the model has {} outputs; the manifest reads the first, {first_name}",
            outputs.len()
        ));
    }
    match kind {
        Kind::Tensor => {
            let names: Vec<String> = outputs
                .iter()
                .map(|o| quote(o["name"].as_str().unwrap_or_default()))
                .collect();
            t += &format!("names = [{}]\n", names.join(", "));
        }
        Kind::Classification => {
            let Some(n) = classes.filter(|_| outputs.len() == 1).or_else(|| {
                let sh = shape_of(first);
                (sh.len() == 2).then(|| sh[1])
            }) else {
                return refuse(format!(
                    "--kind classification needs an output of shape [N, classes]; {first_name} is {}",
                    first["shape"]
                ));
            };
            if let Some(l) = labels
                && l as u64 != n
            {
                return refuse(format!(
                    "the labels file has {l} lines but output {first_name} has {n} classes"
                ));
            }
            // Outputs that are already probabilities (rows in 0..1 summing to 1 on the sample)
            // are not softmaxed again.
            let probabilities = first["probabilities"].as_bool().unwrap_or(false);
            t += &format!(
                "name = {first_name}\nsoftmax = {}\ntop_k = {}\n",
                !probabilities,
                n.min(5)
            );
        }
        Kind::Image => {
            let sh = shape_of(first);
            let layout = match sh[..] {
                [_, c, _, _] if c == 1 || c == 3 => "nchw",
                [_, _, _, c] if c == 1 || c == 3 => "nhwc",
                _ => {
                    return refuse(format!(
                        "wrong layout: --kind image needs an output of 1 or 3 channels as [N,C,H,W] or [N,H,W,C]; {first_name} is {}",
                        first["shape"]
                    ));
                }
            };
            t += &format!("name = {first_name}\nlayout = \"{layout}\"\n");
        }
        Kind::Keypoints | Kind::Detection | Kind::Embedding => {
            t += &format!("name = {first_name}\n");
        }
    }
    if labels.is_some() {
        t += &format!("labels = \"{LABELS_FILE}\"\n");
    }
    Ok(Inferred { text: t, notes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use inferq_core::manifest::{ModelKind, ModelManifest};
    use serde_json::json;
    use std::path::Path;

    fn flags(kind: Option<Kind>, mean: Option<[f32; 3]>, std: Option<[f32; 3]>) -> Flags {
        Flags {
            kind,
            mean,
            std,
            source_name: "net.keras".into(),
        }
    }

    fn summary(outputs: Value, dtype: &str) -> Value {
        json!({
            "format": "keras",
            "input": {"name": "image", "dtype": dtype, "layout": "nhwc", "width": 32, "height": 24},
            "outputs": outputs,
        })
    }

    fn parse(t: &str) -> ModelManifest {
        ModelManifest::parse(t, Path::new("model.toml")).unwrap_or_else(|e| panic!("{e}\n{t}"))
    }

    #[test]
    fn one_class_vector_is_a_classifier_and_probabilities_skip_softmax() {
        let s = summary(
            json!([{"name": "probs", "shape": [1, 4], "probabilities": true}]),
            "float32",
        );
        let f = flags(None, None, Some([255.0; 3]));
        let m = parse(&manifest_text(&f, &s, Some(4)).unwrap().text);
        assert_eq!(m.kind, ModelKind::Classification);
        assert_eq!((m.input.width, m.input.height), (32, 24));
        assert_eq!(m.preprocess.std, [255.0; 3]);
        assert!(!m.output.softmax);
        assert_eq!(m.output.top_k, 4);
        assert_eq!(m.output.labels.as_deref(), Some("labels.txt"));
        let logits = summary(json!([{"name": "l", "shape": [1, 10]}]), "float32");
        let m = parse(
            &manifest_text(&Flags::default(), &logits, None)
                .unwrap()
                .text,
        );
        assert!(m.output.softmax);
        assert_eq!(m.output.top_k, 5);
    }

    #[test]
    fn other_outputs_are_tensors_and_flags_override() {
        let s = summary(
            json!([{"name": "a:0", "shape": [1, 8, 8, 3]}, {"name": "b", "shape": [1]}]),
            "uint8",
        );
        let m = parse(&manifest_text(&Flags::default(), &s, None).unwrap().text);
        assert_eq!(m.kind, ModelKind::Tensor);
        assert_eq!(m.output.names, ["a:0", "b"]);
        let img = flags(Some(Kind::Image), None, None);
        let m = parse(&manifest_text(&img, &s, None).unwrap().text);
        assert_eq!(m.output.name.as_deref(), Some("a:0"));
        assert_eq!(m.output.layout, Some(inferq_core::manifest::Layout::Nhwc));
        let refused = |f: Flags, labels| manifest_text(&f, &s, labels).is_err();
        assert!(
            refused(flags(None, Some([1.0; 3]), None), None),
            "mean on uint8"
        );
        assert!(
            refused(Flags::default(), Some(3)),
            "labels on a tensor model"
        );
        assert!(refused(flags(Some(Kind::Classification), None, None), None));
    }

    #[test]
    fn labels_must_match_the_classes() {
        let s = summary(json!([{"name": "p", "shape": [1, 4]}]), "float32");
        let err = manifest_text(&Flags::default(), &s, Some(3)).unwrap_err();
        assert!(err.contains("3 lines"), "{err}");
    }

    #[test]
    fn names_are_quoted_for_toml() {
        let s = summary(json!([{"name": "we\"ird:0", "shape": [1, 2]}]), "float32");
        let m = parse(&manifest_text(&Flags::default(), &s, None).unwrap().text);
        assert_eq!(m.output.name.as_deref(), Some("we\"ird:0"));
    }
}
