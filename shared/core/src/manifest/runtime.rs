//! `[runtime]`: which ONNX Runtime execution providers run a model.
//!
//! The provider is a property of the deployment as much as of the model, so
//! the worker has a default (`--providers` / `INFERQ_PROVIDERS`, CPU unless
//! set) and a manifest may name its own list, which wins. The names are
//! InferQ's short ones; the worker maps them to ONNX Runtime's providers and
//! refuses to load a model whose provider the loaded library lacks, unless
//! the manifest sets `fallback = true`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An ONNX Runtime execution provider InferQ can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// ONNX Runtime's own CPU kernels (MLAS); in every build.
    Cpu,
    /// Intel OpenVINO (the `onnxruntime-openvino` build).
    Openvino,
    /// XNNPACK CPU kernels (only some builds).
    Xnnpack,
    /// NVIDIA CUDA (the `onnxruntime-gpu` build, CUDA + cuDNN installed).
    Cuda,
    /// NVIDIA TensorRT (the `onnxruntime-gpu` build, TensorRT installed).
    Tensorrt,
}

impl Provider {
    /// Every provider, in the order of the docs.
    pub const ALL: [Provider; 5] = [
        Provider::Cpu,
        Provider::Openvino,
        Provider::Xnnpack,
        Provider::Cuda,
        Provider::Tensorrt,
    ];

    /// The short name used in manifests and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Cpu => "cpu",
            Provider::Openvino => "openvino",
            Provider::Xnnpack => "xnnpack",
            Provider::Cuda => "cuda",
            Provider::Tensorrt => "tensorrt",
        }
    }

    /// ONNX Runtime's name of the provider (as its Python API spells it).
    pub fn ort_name(self) -> &'static str {
        match self {
            Provider::Cpu => "CPUExecutionProvider",
            Provider::Openvino => "OpenVINOExecutionProvider",
            Provider::Xnnpack => "XnnpackExecutionProvider",
            Provider::Cuda => "CUDAExecutionProvider",
            Provider::Tensorrt => "TensorrtExecutionProvider",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A provider name that InferQ does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown execution provider `{0}` (known: cpu, openvino, xnnpack, cuda, tensorrt)")]
pub struct UnknownProvider(pub String);

impl FromStr for Provider {
    type Err = UnknownProvider;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Provider::ALL
            .into_iter()
            .find(|p| p.as_str() == wanted)
            .ok_or_else(|| UnknownProvider(s.trim().to_owned()))
    }
}

/// `[runtime]` of a manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSpec {
    /// Providers in order of preference; ONNX Runtime gives each node to
    /// the first that can run it, and the CPU provider takes whatever is
    /// left. Absent: the worker's `--providers`.
    #[serde(default)]
    pub providers: Option<Vec<Provider>>,
    /// When a listed provider is missing from the loaded ONNX Runtime
    /// library (or fails to start), skip it with a warning instead of
    /// refusing to load the model. Off: a model that asks for a GPU should
    /// not quietly run on the CPU at a fraction of the expected speed.
    #[serde(default)]
    pub fallback: bool,
}

impl RuntimeSpec {
    /// Checks the list: not empty, no repeats.
    pub(super) fn validate(&self) -> Result<(), String> {
        if let Some(list) = &self.providers {
            if list.is_empty() {
                return Err(
                    "runtime.providers must name at least one provider (or be left out)".into(),
                );
            }
            for (i, p) in list.iter().enumerate() {
                if list[..i].contains(p) {
                    return Err(format!("runtime.providers lists `{p}` twice"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for p in Provider::ALL {
            assert_eq!(p.as_str().parse::<Provider>(), Ok(p));
        }
        assert_eq!(" CUDA ".parse::<Provider>(), Ok(Provider::Cuda));
        let err = "rocm".parse::<Provider>().unwrap_err();
        assert!(err.to_string().contains("`rocm`"), "{err}");
        assert!(err.to_string().contains("openvino"), "{err}");
    }

    #[test]
    fn empty_and_repeated_lists_are_refused() {
        let empty = RuntimeSpec {
            providers: Some(vec![]),
            fallback: false,
        };
        assert!(empty.validate().unwrap_err().contains("at least one"));
        let twice = RuntimeSpec {
            providers: Some(vec![Provider::Cpu, Provider::Cuda, Provider::Cpu]),
            fallback: false,
        };
        assert!(twice.validate().unwrap_err().contains("`cpu` twice"));
        assert!(RuntimeSpec::default().validate().is_ok());
    }
}
