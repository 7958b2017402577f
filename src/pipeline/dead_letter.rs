//! Keeping the body of a message the dead-letter queue would not take, so dead-lettering
//! can end without losing it (see [`crate::worker::dead_letter`]).

use super::Pipeline;
use crate::domain::lake;
use crate::ports::{Ledger, ObjectStore, RecordStore, StoreError, TableSink};

impl<S: ObjectStore, R: RecordStore, L: Ledger, T: TableSink> Pipeline<S, R, L, T> {
    /// Writes `body` to the quarantine bucket at a key derived from the message id
    /// (a second delivery overwrites the first copy); returns its `s3://` URI.
    pub async fn keep_dead_letter_body(
        &self,
        message_id: &str,
        body: &str,
    ) -> Result<String, StoreError> {
        let lake_settings = &self.settings.lake;
        let bucket = &lake_settings.quarantine_bucket;
        let key = lake::dead_letter_body_key(&lake_settings.quarantine_prefix, message_id);
        self.store
            .put_bytes(bucket, &key, body.as_bytes().to_vec())
            .await?;
        Ok(format!("s3://{bucket}/{key}"))
    }
}
