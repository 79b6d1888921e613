//! Execution providers: from the names in a manifest (or the worker's
//! `--providers`) to ONNX Runtime's providers on a session.
//!
//! Which providers exist is a property of the ONNX Runtime *library* loaded
//! at run time (the CPU wheel has only the CPU provider; `onnxruntime-gpu`
//! adds CUDA and TensorRT, `onnxruntime-openvino` OpenVINO), so it is asked
//! at load time, not assumed. A model that asks for a provider the library
//! lacks fails to load with an error naming the provider and the ones the
//! library has, unless its manifest sets `[runtime] fallback = true`: a
//! model meant for a GPU should not quietly run on a CPU at a fraction of
//! the speed its operator sized the fleet for.
//!
//! Every provider is given one thread, like the CPU sessions: the engine
//! already runs one session per core.

use std::num::NonZeroUsize;

use inferq_backends::repository::ModelEntry;
use inferq_core::manifest::Provider;
use ort::ep::{self, ExecutionProvider, ExecutionProviderDispatch};

/// What a session is built with.
pub(super) struct Plan {
    /// Providers to register, in order (the CPU provider is implicit: ONNX
    /// Runtime always gives it whatever the others do not take).
    pub(super) dispatch: Vec<ExecutionProviderDispatch>,
    /// The providers this model runs on, for the log.
    pub(super) effective: Vec<Provider>,
}

/// Whether the loaded ONNX Runtime library has `provider` (built in).
pub fn is_available(provider: Provider) -> bool {
    let answer = match provider {
        Provider::Cpu => return true,
        Provider::Openvino => ep::OpenVINO::is_available(),
        Provider::Xnnpack => ep::XNNPACK::is_available(),
        Provider::Cuda => ep::CUDA::is_available(),
        Provider::Tensorrt => ep::TensorRT::is_available(),
    };
    answer.unwrap_or(false)
}

/// The providers InferQ knows that the loaded library has.
pub fn available() -> Vec<Provider> {
    Provider::ALL
        .into_iter()
        .filter(|p| is_available(*p))
        .collect()
}

fn names(list: &[Provider]) -> String {
    list.iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The providers for one model: its manifest's list, else `default`.
pub(super) fn plan(entry: &ModelEntry, default: &[Provider]) -> Result<Plan, String> {
    let runtime = &entry.manifest.runtime;
    let (wanted, from) = match &runtime.providers {
        Some(list) => (list.as_slice(), "its manifest's [runtime] providers"),
        None => (default, "the worker's --providers / INFERQ_PROVIDERS"),
    };
    if wanted.is_empty() {
        return Err("no execution provider configured (--providers is empty)".into());
    }
    if let Some(pos) = wanted.iter().position(|p| *p == Provider::Cpu)
        && pos + 1 != wanted.len()
    {
        return Err(format!(
            "{from} list cpu before {}: ONNX Runtime's CPU provider takes every node it can, \
             so list cpu last (or leave it out: it is always the last resort)",
            names(&wanted[pos + 1..])
        ));
    }
    let mut dispatch = Vec::new();
    let mut effective = Vec::new();
    for &p in wanted {
        if !is_available(p) {
            if runtime.fallback {
                tracing::warn!(model = %entry.key(), provider = %p, available = %names(&available()),
                    "execution provider not in the loaded ONNX Runtime library; skipped \
                     ([runtime] fallback = true)");
                continue;
            }
            return Err(format!(
                "execution provider `{p}` ({}), asked for by {from}, is not in the loaded \
                 ONNX Runtime library; it has: {}. Point ORT_DYLIB_PATH / --ort-library at a \
                 build with it (docs/deploy.md), choose one of those, or set \
                 [runtime] fallback = true in the manifest",
                p.ort_name(),
                names(&available())
            ));
        }
        effective.push(p);
        let one = NonZeroUsize::MIN;
        let d = match p {
            Provider::Cpu => continue,
            Provider::Openvino => ep::OpenVINO::default().with_num_threads(1).build(),
            Provider::Xnnpack => ep::XNNPACK::default()
                .with_intra_op_num_threads(one)
                .build(),
            Provider::Cuda => ep::CUDA::default().build(),
            Provider::Tensorrt => ep::TensorRT::default().build(),
        };
        // Without fallback, a provider that is built in but cannot start
        // (no GPU, driver or CUDA libraries missing) is an error too.
        dispatch.push(if runtime.fallback {
            d.fail_silently()
        } else {
            d.error_on_failure()
        });
    }
    if effective.is_empty() {
        effective.push(Provider::Cpu);
    }
    Ok(Plan {
        dispatch,
        effective,
    })
}
