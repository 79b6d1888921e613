//! Reading storage-reference inputs and writing results to a job's output
//! URI.
//!
//! A job may name where its result should also land (`"output": {"uri":
//! "gs://bucket/prefix/"}`; object names from
//! [`inferq_backends::fetch::result_targets`]). A failed write does not lose the result: it is
//! still in the job record, with the delivery error next to it.

use bytes::Bytes;
use inferq_backends::fetch::fence::{Access, StorageFence};
use inferq_backends::fetch::{FetchError, Fetcher, StorageUri, result_targets};
use inferq_core::job::{JobError, JobRecord, OutputDelivery};
use inferq_vision::postprocess::Artifact;

/// Fetches a `uri` input; failures become the job's error. `fence` is the
/// job owner's storage fence (`None`: the global policy alone), checked
/// again here although the API checked it at submit: a prefix taken away
/// from a tenant then also holds for its jobs still queued.
pub async fn fetch_input(
    fetcher: &Fetcher,
    fence: Option<&StorageFence>,
    uri: &str,
) -> Result<Bytes, JobError> {
    if let Some(f) = fence {
        f.check(Access::Read, uri).map_err(job_error)?;
    }
    let parsed = StorageUri::parse(uri).map_err(job_error)?;
    fetcher.get(&parsed).await.map_err(job_error)
}

fn job_error(e: FetchError) -> JobError {
    JobError::new(e.code(), e.to_string())
}

/// Writes the finished record's result (and image) to `output_uri`; every
/// object written must lie inside the owner's `fence` (as for inputs).
pub async fn write_output(
    fetcher: &Fetcher,
    fence: Option<&StorageFence>,
    output_uri: &str,
    record: &JobRecord,
    artifact: Option<&Artifact>,
) -> OutputDelivery {
    let (json_uri, image_uri) = result_targets(output_uri, &record.id.to_string());
    let mut written = Vec::new();
    // Serialised straight from the record's types, so the numbers read
    // exactly as in `GET /v1/jobs/{id}`.
    #[derive(serde::Serialize)]
    struct ResultDoc<'a> {
        id: &'a inferq_core::JobId,
        model: &'a str,
        version: u64,
        input: &'a inferq_core::job::InputInfo,
        result: &'a Option<inferq_vision::postprocess::Prediction>,
        finished_at: &'a Option<chrono::DateTime<chrono::Utc>>,
    }
    let body = ResultDoc {
        id: &record.id,
        model: &record.model,
        version: record.version,
        input: &record.input,
        result: &record.result,
        finished_at: &record.finished_at,
    };
    let mut put = async |uri: &str, data: Bytes, content_type: &str| -> Result<(), JobError> {
        if let Some(f) = fence {
            f.check(Access::Write, uri).map_err(job_error)?;
        }
        let parsed = StorageUri::parse(uri).map_err(job_error)?;
        fetcher
            .put(&parsed, data, content_type)
            .await
            .map_err(job_error)?;
        written.push(uri.to_owned());
        Ok(())
    };
    let mut result = Ok(());
    if let Some(a) = artifact {
        result = put(&image_uri, Bytes::from(a.bytes.clone()), a.content_type).await;
    }
    if result.is_ok() {
        let json = serde_json::to_vec_pretty(&body).unwrap_or_default();
        result = put(&json_uri, Bytes::from(json), "application/json").await;
    }
    if let Err(e) = &result {
        tracing::warn!(uri = output_uri, code = %e.code, error = %e.message, "writing the output failed");
    }
    OutputDelivery {
        uris: written,
        error: result.err(),
    }
}
