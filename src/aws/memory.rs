//! In-memory fakes of the AWS traits, for pipeline unit tests.

use std::collections::{BTreeMap, HashMap};
use std::io::{Cursor, Read};
use std::path::Path;
use std::sync::Mutex;

use super::{AwsError, AwsErrorKind, ObjectStore, RecordStore};
use crate::envelope::ObjectRef;
use crate::records::Item;

/// Objects by `(bucket, key)`.
#[derive(Default)]
pub struct MemoryStore {
    pub objects: Mutex<BTreeMap<(String, String), Vec<u8>>>,
}

impl MemoryStore {
    pub fn insert(&self, bucket: &str, key: &str, body: &[u8]) {
        self.objects
            .lock()
            .unwrap()
            .insert((bucket.to_owned(), key.to_owned()), body.to_vec());
    }

    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let objects = self.objects.lock().unwrap();
        objects
            .keys()
            .filter(|(b, _)| b == bucket)
            .map(|(_, k)| k.clone())
            .collect()
    }
}

impl ObjectStore for MemoryStore {
    async fn open(&self, object: &ObjectRef) -> Result<Box<dyn Read + Send>, AwsError> {
        let objects = self.objects.lock().unwrap();
        match objects.get(&(object.bucket.clone(), object.key.clone())) {
            Some(body) => Ok(Box::new(Cursor::new(body.clone()))),
            None => Err(AwsError::new(
                "GetObject",
                AwsErrorKind::NotFound,
                "NoSuchKey",
            )),
        }
    }

    async fn put_file(&self, bucket: &str, key: &str, path: &Path) -> Result<(), AwsError> {
        let body = std::fs::read(path)
            .map_err(|e| AwsError::new("PutObject", AwsErrorKind::Transient, e.to_string()))?;
        self.insert(bucket, key, &body);
        Ok(())
    }
}

/// Items by table, in write order.
#[derive(Default)]
pub struct MemoryRecords {
    pub tables: Mutex<HashMap<String, Vec<Item>>>,
}

impl RecordStore for MemoryRecords {
    async fn upsert(&self, table: &str, items: Vec<Item>) -> Result<(), AwsError> {
        self.tables
            .lock()
            .unwrap()
            .entry(table.to_owned())
            .or_default()
            .extend(items);
        Ok(())
    }
}
