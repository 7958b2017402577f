//! The other direction: S3 event notification bodies, built. `lakeworker backfill` sends
//! them for objects already in the landing bucket, and the tests send them in place of S3.
//! [`parse`](super::parse) reads back exactly what [`S3Event`] writes.
//!
//! Keys are written as S3 writes them ([`form_encode`]): form-encoded, `/` left as is.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};

/// One record of an S3 event notification, for one object version. Absent fields are left
/// out of the record, as S3 leaves `size` and `eTag` out of `ObjectRemoved:*` records.
///
/// ```
/// use lakeworker::domain::envelope::S3Event;
/// let body = S3Event::put("landing", "users/a b.csv").etag("e1").size(12).body();
/// assert!(body.contains(r#""key":"users/a+b.csv""#));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Event {
    /// Without the `s3:` prefix, as S3 writes it: `ObjectCreated:Put`.
    pub event_name: String,
    pub bucket: String,
    /// The key as S3 stores it; [`form_encode`]d in the record.
    pub key: String,
    pub size: Option<u64>,
    /// Without quotes.
    pub etag: Option<String>,
    pub version_id: Option<String>,
    /// RFC 3339, written as given (`eventTime`).
    pub event_time: Option<String>,
    /// lakeworker's extension: the id of a reprocess request (`lakeworker.reprocess`).
    pub reprocess: Option<String>,
}

impl S3Event {
    /// A record named `event_name` (`ObjectCreated:Put`, `ObjectRemoved:Delete`, ...) for
    /// `bucket` and `key`, with nothing else set.
    pub fn new(
        event_name: impl Into<String>,
        bucket: impl Into<String>,
        key: impl Into<String>,
    ) -> Self {
        S3Event {
            event_name: event_name.into(),
            bucket: bucket.into(),
            key: key.into(),
            size: None,
            etag: None,
            version_id: None,
            event_time: None,
            reprocess: None,
        }
    }

    /// An `ObjectCreated:Put` record.
    pub fn put(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        Self::new("ObjectCreated:Put", bucket, key)
    }

    pub fn size(mut self, size: u64) -> Self {
        self.size = Some(size);
        self
    }

    pub fn etag(mut self, etag: impl Into<String>) -> Self {
        self.etag = Some(etag.into());
        self
    }

    pub fn version_id(mut self, version_id: impl Into<String>) -> Self {
        self.version_id = Some(version_id.into());
        self
    }

    /// The `eventTime`, RFC 3339.
    pub fn at(mut self, event_time: impl Into<String>) -> Self {
        self.event_time = Some(event_time.into());
        self
    }

    /// Marks the record as a request to process the version again, for `request`.
    pub fn reprocess(mut self, request: impl Into<String>) -> Self {
        self.reprocess = Some(request.into());
        self
    }

    /// The record, as one entry of a notification's `Records`.
    pub fn record(&self) -> Value {
        let mut object = json!({ "key": form_encode(&self.key) });
        if let Some(size) = self.size {
            object["size"] = json!(size);
        }
        if let Some(etag) = &self.etag {
            object["eTag"] = json!(etag);
        }
        if let Some(version_id) = &self.version_id {
            object["versionId"] = json!(version_id);
        }
        let mut record = json!({
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "eventName": self.event_name,
            "s3": {
                "s3SchemaVersion": "1.0",
                "bucket": { "name": self.bucket },
                "object": object,
            }
        });
        if let Some(time) = &self.event_time {
            record["eventTime"] = json!(time);
        }
        if let Some(request) = &self.reprocess {
            record["lakeworker"] = json!({ "reprocess": request });
        }
        record
    }

    /// A notification body holding only this record.
    pub fn body(&self) -> String {
        notification(std::slice::from_ref(self))
    }
}

/// A notification body holding `records`, in order (one S3 message can hold several).
pub fn notification(records: &[S3Event]) -> String {
    let records: Vec<Value> = records.iter().map(S3Event::record).collect();
    json!({ "Records": records }).to_string()
}

/// What [`form_encode`] writes as is: letters, digits, `-_.~`, and `/`. A space becomes
/// `+`; everything else is percent-encoded (UTF-8 bytes, upper-case hex).
const KEPT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/')
    .remove(b' ');

/// S3's key encoding in event notifications: `application/x-www-form-urlencoded` style
/// (`red flower.jpg` is `red+flower.jpg`, a `+` is `%2B`, `=` is `%3D`), except that S3
/// leaves `/` unescaped, so `users/a b.csv` is `users/a+b.csv`. (Emulators such as moto
/// and MinIO write `/` as `%2F`; [`decode_form_key`](super::decode_form_key) reads both.)
pub fn form_encode(key: &str) -> String {
    percent_encoding::utf8_percent_encode(key, KEPT)
        .to_string()
        .replace(' ', "+")
}

#[cfg(test)]
mod tests {
    use super::super::{decode_form_key, parse, Envelope, ObjectRef};
    use super::*;

    /// Keys that need each rule: spaces, `+`, `%` (also one that looks encoded), `/`
    /// (leading, doubled, trailing), unicode, control characters, URL delimiters.
    const AWKWARD: &[&str] = &[
        "users/a.csv",
        "users/a b.csv",
        "users/a+b.csv",
        "users/a%2Bb.csv",
        "users/a%2Fb.csv",
        "users/100%.csv",
        "users/ü/日本語 😀.csv",
        "/users//a/",
        "users/a\tb\nc\u{7f}.csv",
        "users/ingest_date=2024-01-01/a&b?c#d;e:f,g'h(i)*j!k@l$m[n]o{p}q|r\\s^t`u\"v<w>x.csv",
        " + % / ",
        "~-_.",
    ];

    fn parsed(body: &str) -> Vec<ObjectRef> {
        match parse(body).unwrap() {
            Envelope::Objects(objects) => objects,
            other => panic!("expected objects, got {other:?} from {body}"),
        }
    }

    #[test]
    fn keys_are_encoded_as_s3_does() {
        assert_eq!(form_encode("red flower.jpg"), "red+flower.jpg");
        assert_eq!(
            form_encode("users/a b+c ü%.csv"),
            "users/a+b%2Bc+%C3%BC%25.csv"
        );
        assert_eq!(
            form_encode("users/ingest_date=2024-01-01/x~y_z-1.csv"),
            "users/ingest_date%3D2024-01-01/x~y_z-1.csv"
        );
        assert_eq!(form_encode("a%2Fb"), "a%252Fb");
        for key in AWKWARD {
            let encoded = form_encode(key);
            assert!(
                encoded.bytes().all(|b| b.is_ascii_graphic()),
                "{key:?} → {encoded:?}"
            );
            assert!(!encoded.contains(' '), "{encoded}");
            assert_eq!(decode_form_key(&encoded).as_deref(), Some(*key));
        }
    }

    #[test]
    fn the_parser_reads_back_exactly_what_the_builder_wrote() {
        for key in AWKWARD {
            let event = S3Event::new("ObjectCreated:CompleteMultipartUpload", "landing", *key)
                .size(42)
                .etag("abc")
                .version_id("v-1")
                .at("2024-05-06T07:08:09Z")
                .reprocess("r-1");
            let body = event.body();
            assert_eq!(
                parsed(&body),
                vec![ObjectRef {
                    bucket: "landing".into(),
                    key: (*key).into(),
                    size: Some(42),
                    etag: Some("abc".into()),
                    version_id: Some("v-1".into()),
                    event_time: Some("2024-05-06T07:08:09Z".parse().unwrap()),
                    reprocess: Some("r-1".into()),
                }],
                "{body}"
            );
        }
    }

    #[test]
    fn unset_fields_are_left_out_and_read_back_as_absent() {
        let event = S3Event::put("landing", "users/a b.csv");
        let record = event.record();
        assert_eq!(record["eventName"], "ObjectCreated:Put");
        assert_eq!(record["s3"]["object"], json!({"key": "users/a+b.csv"}));
        assert!(record.get("eventTime").is_none() && record.get("lakeworker").is_none());
        assert_eq!(
            parsed(&event.body()),
            vec![ObjectRef {
                bucket: "landing".into(),
                key: "users/a b.csv".into(),
                ..ObjectRef::default()
            }]
        );
    }

    #[test]
    fn several_records_keep_their_order_and_names() {
        let body = notification(&[
            S3Event::put("landing", "users/first.csv").etag("1"),
            S3Event::new("ObjectRemoved:Delete", "landing", "users/gone.csv"),
            S3Event::new("ObjectCreated:Copy", "landing", "users/second.csv").etag("2"),
        ]);
        let keys: Vec<String> = parsed(&body).into_iter().map(|o| o.key).collect();
        assert_eq!(keys, ["users/first.csv", "users/second.csv"]);
        let removed = S3Event::new("ObjectRemoved:Delete", "landing", "users/gone.csv");
        assert_eq!(
            parse(&removed.body()).unwrap(),
            Envelope::Discard("no ObjectCreated records (saw ObjectRemoved:Delete)".into())
        );
    }

    proptest::proptest! {
        #[test]
        fn any_key_round_trips(key in "(?s).{0,40}", spaced in "[ +%/a-z]{0,12}") {
            for key in [key, spaced] {
                let body = S3Event::put("landing", key.clone()).body();
                proptest::prop_assert_eq!(&parsed(&body)[0].key, &key);
            }
        }
    }
}
