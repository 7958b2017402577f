//! What an attempt publishes, as the ledger sees it: the outputs recorded before any
//! upload, the removal of an earlier attempt's outputs that this one did not rewrite, and
//! the landing object's deletion once its raw copy is safe.

use tracing::Instrument;

use super::claim::Attempt;
use super::{ObjectSummary, Pipeline};
use crate::domain::envelope::ObjectRef;
use crate::domain::lake;
use crate::pipeline::error::JobError;
use crate::pipeline::job::Job;
use crate::ports::{Ledger, ObjectStore, RecordStore, TableSink};

impl<S: ObjectStore, R: RecordStore, L: Ledger, T: TableSink> Pipeline<S, R, L, T> {
    /// Records the outputs this attempt is about to publish, before it uploads them, so a
    /// later attempt knows what may exist. Fails if the claim is no longer this job's.
    pub(super) async fn publishing(
        &self,
        attempt: &Attempt,
        object: &ObjectRef,
        outputs: &[String],
    ) -> Result<(), JobError> {
        let recorded = self
            .ledger
            .publishing(&attempt.claim, outputs)
            .instrument(tracing::info_span!("ledger", operation = "publishing"))
            .await?;
        if recorded {
            Ok(())
        } else {
            Err(JobError::LeaseLost { uri: object.uri() })
        }
    }

    /// Deletes what earlier attempts of this version published (`earlier`) and `current`
    /// does not hold (a part a larger `target_file_size` no longer makes, bad rows that are
    /// good now). Only under a lease just renewed, and only while the job is not stopped:
    /// a job that lost its claim deletes nothing. Only this version's own outputs are
    /// touched: a key that does not carry its object id is left alone and logged.
    pub(super) async fn remove_stale(
        &self,
        attempt: &Attempt,
        object: &ObjectRef,
        earlier: &[String],
        current: &[String],
        job: &Job,
    ) -> Result<(), JobError> {
        let stale: Vec<&String> = earlier.iter().filter(|o| !current.contains(o)).collect();
        if stale.is_empty() {
            return Ok(());
        }
        if !self.ledger.renew(&attempt.claim).await? {
            return Err(JobError::LeaseLost { uri: object.uri() });
        }
        let id = lake::object_id(object);
        for output in stale {
            if job.stopped().is_some() {
                return Err(JobError::Stopped);
            }
            let Some((bucket, key)) = output.strip_prefix("s3://").and_then(|o| o.split_once('/'))
            else {
                tracing::warn!(%output, "an earlier output that is not an s3:// URI; left alone");
                continue;
            };
            if !key.contains(&id) {
                tracing::warn!(%output, "an earlier output without this version's id; left alone");
                continue;
            }
            let stale = ObjectRef {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                ..ObjectRef::default()
            };
            self.store.delete(&stale).await?;
            tracing::info!(%output, "removed an output of an earlier attempt that this one did not rewrite");
        }
        Ok(())
    }

    /// Outputs as `s3://` URIs: records from before outputs were URIs list keys, in the
    /// quarantine bucket under `quarantine_prefix`, else in the lake bucket.
    pub(super) fn output_uris(&self, outputs: &[String]) -> Vec<String> {
        let lake = &self.settings.lake;
        let quarantine = format!("{}/", lake.quarantine_prefix);
        outputs
            .iter()
            .map(|output| match output.starts_with("s3://") {
                true => output.clone(),
                false if output.starts_with(&quarantine) => {
                    crate::domain::ledger::output_uri(&lake.quarantine_bucket, output)
                }
                false => crate::domain::ledger::output_uri(&lake.bucket, output),
            })
            .collect()
    }

    /// With `landing.delete_after`, removes a converted object from the landing bucket.
    /// Runs after the ledger says `done`, so a redelivery finds the answer there instead of
    /// a missing object, and only once the raw copy is there with the original's size (the
    /// copy itself is pinned to the version). A failure only leaves the object where it was.
    pub(super) async fn delete_landing(&self, object: &ObjectRef, summary: &ObjectSummary) {
        let Some(raw) = summary
            .raw
            .as_ref()
            .filter(|_| self.settings.landing.delete_after)
        else {
            return;
        };
        let copy = ObjectRef {
            bucket: self.settings.lake.bucket.clone(),
            key: raw.clone(),
            ..ObjectRef::default()
        };
        let (original, kept) = tokio::join!(self.store.head(object), self.store.head(&copy));
        match (original, kept) {
            (Ok(original), Ok(kept)) if original.size.is_some() && original.size == kept.size => {}
            (original, kept) => {
                tracing::warn!(
                    uri = %summary.uri,
                    raw = %raw,
                    ?original,
                    ?kept,
                    "the raw copy could not be checked against the original; the landing object stays"
                );
                return;
            }
        }
        match self.store.delete(object).await {
            Ok(()) => tracing::info!(uri = %summary.uri, "landing object deleted"),
            Err(e) => {
                tracing::warn!(uri = %summary.uri, error = %e, "could not delete the landing object; it stays")
            }
        }
    }
}

/// The ledger outputs of a written object: its parts, bad rows and raw copy.
pub(super) fn summary_outputs(
    lake: &crate::config::LakeSettings,
    summary: &ObjectSummary,
) -> Vec<String> {
    let in_lake = |key: &String| crate::domain::ledger::output_uri(&lake.bucket, key);
    summary
        .part_uris
        .iter()
        .cloned()
        .chain(
            summary
                .quarantine
                .iter()
                .map(|key| crate::domain::ledger::output_uri(&lake.quarantine_bucket, key)),
        )
        .chain(summary.raw.iter().map(in_lake))
        .collect()
}

/// The ledger outputs of a rejected file: its copy in the quarantine and the report.
pub(super) fn rejection_outputs(quarantine_bucket: &str, copy: &str) -> Vec<String> {
    vec![
        crate::domain::ledger::output_uri(quarantine_bucket, copy),
        crate::domain::ledger::output_uri(quarantine_bucket, &format!("{copy}.error.json")),
    ]
}
