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
///
/// Videos may be larger than images: the object is read up to the larger of
/// the fetch limit and `max_video_bytes`, then held to the fetch limit
/// unless it is a video.
pub async fn fetch_input(
    fetcher: &Fetcher,
    fence: Option<&StorageFence>,
    uri: &str,
    max_video_bytes: usize,
) -> Result<Bytes, JobError> {
    if let Some(f) = fence {
        f.check(Access::Read, uri).map_err(job_error)?;
    }
    let parsed = StorageUri::parse(uri).map_err(job_error)?;
    let limit = fetcher.max_bytes();
    let bytes = fetcher
        .get_capped(&parsed, limit.max(max_video_bytes))
        .await
        .map_err(job_error)?;
    if bytes.len() > limit && inferq_core::video::sniff(&bytes).is_none() {
        return Err(job_error(FetchError::TooLarge { limit }));
    }
    Ok(bytes)
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
    let objects = artifact
        .map(|a| (image_uri, Bytes::from(a.bytes.clone()), a.content_type))
        .into_iter()
        .collect();
    write_objects(fetcher, fence, output_uri, &json_uri, record, objects).await
}

/// [`write_output`] for a video job: the per-frame results beside the
/// result JSON (`<id>.frames.jsonl`) and, for image models, the output
/// video (`<id>.mp4`).
pub async fn write_video_output(
    fetcher: &Fetcher,
    fence: Option<&StorageFence>,
    output_uri: &str,
    record: &JobRecord,
    video: Option<&[u8]>,
    frames: &[u8],
) -> OutputDelivery {
    let (json_uri, image_uri) = result_targets(output_uri, &record.id.to_string());
    let stem = image_uri.strip_suffix(".png").unwrap_or(&image_uri);
    let mut objects = vec![(
        format!("{stem}.frames.jsonl"),
        Bytes::copy_from_slice(frames),
        "application/x-ndjson",
    )];
    if let Some(v) = video {
        objects.push((
            format!("{stem}.mp4"),
            Bytes::copy_from_slice(v),
            "video/mp4",
        ));
    }
    write_objects(fetcher, fence, output_uri, &json_uri, record, objects).await
}

/// Writes `objects` (URI, bytes, content type), then the result JSON.
async fn write_objects(
    fetcher: &Fetcher,
    fence: Option<&StorageFence>,
    output_uri: &str,
    json_uri: &str,
    record: &JobRecord,
    objects: Vec<(String, Bytes, &str)>,
) -> OutputDelivery {
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
    for (uri, data, content_type) in objects {
        result = put(&uri, data, content_type).await;
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        let json = serde_json::to_vec_pretty(&body).unwrap_or_default();
        result = put(json_uri, Bytes::from(json), "application/json").await;
    }
    if let Err(e) = &result {
        tracing::warn!(uri = output_uri, code = %e.code, error = %e.message, "writing the output failed");
    }
    OutputDelivery {
        uris: written,
        error: result.err(),
    }
}
