//! S3 adapter: stream a landing object into a blocking reader; upload lake parts, with
//! multipart upload for large ones.

use std::io::{self, Read};
use std::path::Path;

use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Buf, Bytes};
use futures_util::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::error::from_sdk;
use super::timeouts;
use crate::config::AwsTimeouts;
use crate::convert::SourceFailed;
use crate::domain::envelope::ObjectRef;
use crate::ports::{ObjectInfo, ObjectStore, Opened, StoreError, StoreErrorKind};

/// Files above this size are uploaded in parts.
pub const MULTIPART_THRESHOLD: u64 = 64 * 1024 * 1024;
/// Part size of multipart uploads (S3 allows 5 MiB to 5 GiB, at most 10,000 parts).
pub const PART_SIZE: u64 = 16 * 1024 * 1024;
/// S3's smallest part (all but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Parts uploaded at once per file, by default.
pub const PART_CONCURRENCY: usize = 4;
/// CopyObject's limit; larger objects are copied in parts.
const MAX_COPY: u64 = 5 * 1024 * 1024 * 1024;
/// Part size of multipart copies.
const COPY_PART: u64 = 512 * 1024 * 1024;
/// Characters escaped in an `x-amz-copy-source` key: all but unreserved ones and `/`.
const COPY_SOURCE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');
/// Chunks buffered between the S3 download and the converter.
const STREAM_CHUNKS: usize = 16;

/// Pins a GetObject, HeadObject or DeleteObject request to the exact version `object`
/// names: by version id, else only while the key holds its ETag (`If-Match`).
macro_rules! pin_version {
    ($request:expr, $object:expr) => {
        match (&$object.version_id, &$object.etag) {
            (Some(version), _) => $request.version_id(version),
            (None, Some(etag)) => $request.if_match(format!("\"{etag}\"")),
            (None, None) => $request,
        }
    };
}

/// S3 through the SDK.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    multipart_threshold: u64,
    part_size: u64,
    part_concurrency: usize,
    /// Uploads and copies get a deadline that grows with their size.
    timeouts: AwsTimeouts,
}

impl S3Store {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        S3Store {
            client,
            multipart_threshold: MULTIPART_THRESHOLD,
            part_size: PART_SIZE,
            part_concurrency: PART_CONCURRENCY,
            timeouts: AwsTimeouts::default(),
        }
    }

    /// The deadlines the client was built with, to size transfers from.
    pub fn with_timeouts(mut self, timeouts: AwsTimeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// A per-call override for CompleteMultipartUpload of `parts` parts: S3 documents
    /// that it may take minutes (it answers with whitespace meanwhile, so the first byte
    /// comes soon, but the whole answer late): a minute plus 100 ms a part.
    fn completing(&self, parts: usize) -> aws_sdk_s3::config::Builder {
        let attempt = self.timeouts.call
            + std::time::Duration::from_secs(60)
            + std::time::Duration::from_millis(100) * parts as u32;
        aws_sdk_s3::config::Builder::default().timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(self.timeouts.connect)
                .read_timeout(attempt)
                .operation_attempt_timeout(attempt)
                .build(),
        )
    }

    /// A per-call override for a request that sends or copies `bytes`.
    fn transfer(&self, bytes: u64) -> aws_sdk_s3::config::Builder {
        aws_sdk_s3::config::Builder::default()
            .timeout_config(timeouts::transfer(&self.timeouts, bytes))
    }

    /// Sets the multipart part size (at least 5 MiB; files above the larger of it and
    /// [`MULTIPART_THRESHOLD`] go in parts) and how many parts of a file go up at once.
    /// Parts are streamed from the local file, so memory stays bounded by the SDK's body
    /// buffers times `concurrency`, whatever the file size.
    pub fn with_upload(mut self, part_size: u64, concurrency: usize) -> Self {
        self.part_size = part_size.max(MIN_PART_SIZE);
        self.multipart_threshold = self.part_size.max(MULTIPART_THRESHOLD);
        self.part_concurrency = concurrency.max(1);
        self
    }

    /// Overrides when uploads switch to multipart and the part size (at least 5 MiB).
    pub fn with_multipart(mut self, threshold: u64, part_size: u64) -> Self {
        self.multipart_threshold = threshold;
        self.part_size = part_size.max(MIN_PART_SIZE);
        self
    }

    /// Uploads the first `size` bytes of `path` as a multipart upload, a bounded number of
    /// parts at a time; aborts the upload if any step fails or
    /// `cancel` fires.
    pub async fn put_multipart(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        size: u64,
        cancel: &CancellationToken,
    ) -> Result<(), StoreError> {
        let parts = |upload_id: String| async move {
            self.upload_parts(bucket, key, path, size, &upload_id).await
        };
        self.multipart(bucket, key, Some(cancel), parts).await
    }

    /// Copies an object above CopyObject's 5 GiB limit with UploadPartCopy.
    async fn copy_multipart(
        &self,
        source: &str,
        size: u64,
        bucket: &str,
        key: &str,
    ) -> Result<(), StoreError> {
        let parts = |upload_id: String| async move {
            let mut parts = Vec::new();
            let mut offset = 0;
            while offset < size {
                let end = (offset + COPY_PART).min(size) - 1;
                let number = parts.len() as i32 + 1;
                let copied = self
                    .client
                    .upload_part_copy()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .copy_source(source)
                    .copy_source_range(format!("bytes={offset}-{end}"))
                    .customize()
                    .config_override(self.transfer(end + 1 - offset))
                    .send()
                    .await
                    .map_err(|e| from_sdk("S3 UploadPartCopy", e))?;
                let etag = copied.copy_part_result.and_then(|r| r.e_tag);
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(etag)
                        .build(),
                );
                offset = end + 1;
            }
            Ok(parts)
        };
        self.multipart(bucket, key, None, parts).await
    }

    /// The life of a multipart upload: create it, let `parts` fill it, complete it; abort
    /// it when anything fails or `cancel` fires, so no unfinished upload is left billed.
    async fn multipart<F, Fut>(
        &self,
        bucket: &str,
        key: &str,
        cancel: Option<&CancellationToken>,
        parts: F,
    ) -> Result<(), StoreError>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<CompletedPart>, StoreError>>,
    {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| from_sdk("S3 CreateMultipartUpload", e))?;
        let upload_id = created.upload_id.ok_or_else(|| {
            StoreError::new(
                "S3 CreateMultipartUpload",
                StoreErrorKind::Transient,
                "no upload id returned",
            )
        })?;
        let never = CancellationToken::new();
        let cancel = cancel.unwrap_or(&never);
        let uploaded = tokio::select! {
            parts = parts(upload_id.clone()) => parts,
            _ = cancel.cancelled() => Err(StoreError::cancelled("S3 UploadPart")),
        };
        let completed = match uploaded {
            Ok(parts) => {
                let count = parts.len();
                self.client
                    .complete_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .customize()
                    .config_override(self.completing(count))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| from_sdk("S3 CompleteMultipartUpload", e))
            }
            Err(e) => Err(e),
        };
        if completed.is_err() {
            let aborted = self
                .client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
            if let Err(abort) = aborted {
                let error = from_sdk("S3 AbortMultipartUpload", abort);
                tracing::warn!(%key, %error, "could not abort multipart upload");
            }
        }
        completed
    }

    async fn upload_parts(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        size: u64,
        upload_id: &str,
    ) -> Result<Vec<CompletedPart>, StoreError> {
        let part_size = self.part_size.max(size.div_ceil(10_000));
        let count = size.div_ceil(part_size);
        let mut parts: Vec<CompletedPart> = futures_util::stream::iter(0..count)
            .map(|n| async move {
                let offset = n * part_size;
                let body = ByteStream::read_from()
                    .path(path)
                    .offset(offset)
                    .length(Length::Exact(part_size.min(size - offset)))
                    .build()
                    .await
                    .map_err(|e| {
                        StoreError::new(
                            "S3 UploadPart",
                            StoreErrorKind::Transient,
                            format!("reading {}: {e}", path.display()),
                        )
                    })?;
                let number = (n + 1) as i32;
                let uploaded = self
                    .client
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .body(body)
                    .customize()
                    .config_override(self.transfer(part_size.min(size - offset)))
                    .send()
                    .await
                    .map_err(|e| from_sdk("S3 UploadPart", e))?;
                Ok::<_, StoreError>(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(uploaded.e_tag)
                        .build(),
                )
            })
            .buffer_unordered(self.part_concurrency)
            .try_collect()
            .await?;
        parts.sort_by_key(|p| p.part_number);
        Ok(parts)
    }
}

impl ObjectStore for S3Store {
    async fn open(&self, object: &ObjectRef) -> Result<Opened, StoreError> {
        let mut request = self
            .client
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key);
        // Read exactly the version the event names: by version id, else by ETag.
        request = pin_version!(request, object);
        let output = request
            .send()
            .await
            .map_err(|e| from_sdk("S3 GetObject", e))?;
        let size = output.content_length.and_then(|n| u64::try_from(n).ok());
        let mut body = output.body;
        let (sender, receiver) = mpsc::channel(STREAM_CHUNKS);
        tokio::spawn(async move {
            loop {
                let next = match body.try_next().await {
                    Ok(chunk) => Ok(chunk),
                    Err(e) => Err(SourceFailed::io(format!("S3 download: {e}"))),
                };
                let last = !matches!(next, Ok(Some(_)));
                // The reader hung up (the job failed): stop downloading.
                if sender.send(next).await.is_err() || last {
                    break;
                }
            }
        });
        let reader = Box::new(ChannelReader {
            receiver,
            current: Bytes::new(),
            ended: false,
        });
        Ok(Opened { reader, size })
    }

    async fn head(&self, object: &ObjectRef) -> Result<ObjectInfo, StoreError> {
        let mut request = self
            .client
            .head_object()
            .bucket(&object.bucket)
            .key(&object.key);
        request = pin_version!(request, object);
        let output = request
            .send()
            .await
            .map_err(|e| from_sdk("S3 HeadObject", e))?;
        Ok(ObjectInfo {
            // Objects written while versioning was off have the version "null".
            version_id: output.version_id.filter(|v| !v.is_empty() && v != "null"),
            etag: output.e_tag.map(|e| e.trim_matches('"').to_owned()),
            size: output.content_length.and_then(|n| u64::try_from(n).ok()),
            last_modified: output
                .last_modified
                .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
        })
    }

    async fn copy(&self, object: &ObjectRef, bucket: &str, key: &str) -> Result<(), StoreError> {
        let mut source = format!(
            "{}/{}",
            object.bucket,
            percent_encoding::utf8_percent_encode(&object.key, COPY_SOURCE)
        );
        if let Some(version) = &object.version_id {
            source.push_str(&format!(
                "?versionId={}",
                percent_encoding::utf8_percent_encode(version, COPY_SOURCE)
            ));
        }
        // The size decides the copy's way and deadline: ask S3 when the event did not say.
        let size = match object.size {
            Some(size) => size,
            None => self.head(object).await?.size.unwrap_or(MAX_COPY),
        };
        if size > MAX_COPY {
            return self.copy_multipart(&source, size, bucket, key).await;
        }
        let mut request = self
            .client
            .copy_object()
            .copy_source(&source)
            .bucket(bucket)
            .key(key);
        if let (None, Some(etag)) = (&object.version_id, &object.etag) {
            request = request.copy_source_if_match(format!("\"{etag}\""));
        }
        // Server-side, but S3 answers only when the copy is done.
        request
            .customize()
            .config_override(self.transfer(size))
            .send()
            .await
            .map_err(|e| from_sdk("S3 CopyObject", e))?;
        Ok(())
    }

    async fn delete(&self, object: &ObjectRef) -> Result<(), StoreError> {
        let mut request = self
            .client
            .delete_object()
            .bucket(&object.bucket)
            .key(&object.key);
        request = pin_version!(request, object);
        request
            .send()
            .await
            .map_err(|e| from_sdk("S3 DeleteObject", e))?;
        Ok(())
    }

    async fn put_bytes(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        let transfer = self.transfer(body.len() as u64);
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body))
            .customize()
            .config_override(transfer)
            .send()
            .await
            .map_err(|e| from_sdk("S3 PutObject", e))?;
        Ok(())
    }

    async fn put_file(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        cancel: &CancellationToken,
    ) -> Result<(), StoreError> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| {
                StoreError::new(
                    "S3 PutObject",
                    StoreErrorKind::Transient,
                    format!("{}: {e}", path.display()),
                )
            })?
            .len();
        if size > self.multipart_threshold {
            return self.put_multipart(bucket, key, path, size, cancel).await;
        }
        let body = ByteStream::from_path(path).await.map_err(|e| {
            StoreError::new(
                "S3 PutObject",
                StoreErrorKind::Transient,
                format!("{}: {e}", path.display()),
            )
        })?;
        let put = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body)
            .customize()
            .config_override(self.transfer(size))
            .send();
        tokio::select! {
            result = put => result.map(|_| ()).map_err(|e| from_sdk("S3 PutObject", e)),
            // An unfinished PutObject leaves nothing behind.
            _ = cancel.cancelled() => Err(StoreError::cancelled("S3 PutObject")),
        }
    }
}

/// The blocking end of a download: `read` waits for the next chunk from the async side.
/// The channel is bounded, so a slow converter slows the download instead of buffering.
/// The end of the body is an explicit `Ok(None)`: a channel that closes without it (the
/// download task died) is an error, never a silently truncated file.
pub struct ChannelReader {
    receiver: mpsc::Receiver<io::Result<Option<Bytes>>>,
    current: Bytes,
    ended: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if self.ended {
                return Ok(0);
            }
            match self.receiver.blocking_recv() {
                Some(Ok(Some(chunk))) => self.current = chunk,
                Some(Ok(None)) => self.ended = true,
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(SourceFailed::io(
                        "S3 download stopped before the end of the object",
                    ))
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader_of(chunks: Vec<io::Result<Option<Bytes>>>) -> (String, Result<usize, String>) {
        let (sender, receiver) = mpsc::channel(chunks.len().max(1));
        for chunk in chunks {
            sender.try_send(chunk).unwrap();
        }
        drop(sender);
        let mut reader = ChannelReader {
            receiver,
            current: Bytes::new(),
            ended: false,
        };
        let mut text = Vec::new();
        let result = reader.read_to_end(&mut text).map_err(|e| e.to_string());
        (String::from_utf8(text).unwrap(), result)
    }

    #[test]
    fn channel_reader_streams_chunks_until_the_end_marker() {
        let chunk = |t: &'static str| Ok(Some(Bytes::from_static(t.as_bytes())));
        let (text, result) = reader_of(vec![chunk("user_id\n"), chunk("u1\n"), Ok(None)]);
        assert_eq!(text, "user_id\nu1\n");
        assert_eq!(result, Ok(11));
    }

    #[test]
    fn channel_reader_reports_errors_and_early_closes() {
        let chunk = Ok(Some(Bytes::from_static(b"user_id\n")));
        let (_, failed) = reader_of(vec![chunk, Err(SourceFailed::io("S3 download: reset"))]);
        assert_eq!(failed.unwrap_err(), "S3 download: reset");
        let chunk = Ok(Some(Bytes::from_static(b"user_id\n")));
        let (text, cut) = reader_of(vec![chunk]);
        assert_eq!(text, "user_id\n");
        assert_eq!(
            cut.unwrap_err(),
            "S3 download stopped before the end of the object"
        );
    }
}
