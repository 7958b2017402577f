//! Turning a byte stream into text input: gzip and zstd are recognised by their magic
//! bytes (and a `.gz`/`.zst` name must hold what it says), a UTF-8 byte order mark is
//! dropped, a compressed stream that expands past the dataset's [`Expansion`] limits is
//! cut off, and read errors are told apart: a failed download is worth a retry, a corrupt
//! or exploding compressed stream is not.

use std::fmt;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use flate2::read::MultiGzDecoder;

use super::ConvertError;
use crate::domain::dataset::Expansion;

/// Read buffer of the converter's input.
pub(super) const BUFFER: usize = 256 * 1024;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const BOM: [u8; 3] = [0xef, 0xbb, 0xbf];

/// The payload of an I/O error that comes from the source itself (a dropped download, a
/// stopped job), not from the data: the one kind of read error worth retrying.
#[derive(Debug)]
pub struct SourceFailed(pub String);

impl fmt::Display for SourceFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SourceFailed {}

impl SourceFailed {
    pub fn io(message: impl Into<String>) -> io::Error {
        io::Error::other(SourceFailed(message.into()))
    }
}

/// The payload of the I/O error that ends a compressed stream expanding past its
/// [`Expansion`] limits: why, in words naming the limit.
#[derive(Debug)]
struct ExpansionRefused(String);

impl fmt::Display for ExpansionRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ExpansionRefused {}

/// Classifies a read error: the source failing is transient, anything else (a corrupt
/// gzip or zstd stream, one that expands too far) means the file is bad.
pub fn read_error(error: io::Error) -> ConvertError {
    let Some(inner) = error.get_ref() else {
        return ConvertError::Malformed(format!("unreadable input: {error}"));
    };
    if inner.downcast_ref::<SourceFailed>().is_some() {
        ConvertError::Read(error)
    } else if let Some(refused) = inner.downcast_ref::<ExpansionRefused>() {
        ConvertError::Malformed(refused.0.clone())
    } else {
        ConvertError::Malformed(format!("unreadable input: {error}"))
    }
}

/// Counts the bytes read through it: the compressed input, before its decoder.
struct Counted<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A decoder's output, cut off with an [`ExpansionRefused`] error as soon as it passes
/// `max_bytes`, or `max_ratio` times the compressed bytes read so far (past
/// `ratio_free_bytes`). Checking the running ratio, not the final one, stops a bomb after
/// a bounded amount of work however large the compressed file is; the decoder reads no
/// further once this stops asking.
struct Bounded<R> {
    inner: R,
    compressed: Arc<AtomicU64>,
    decompressed: u64,
    limits: Expansion,
}

impl<R: Read> Bounded<R> {
    fn check(&self) -> Result<(), ExpansionRefused> {
        let Expansion {
            max_bytes,
            max_ratio,
            ratio_free_bytes,
        } = self.limits;
        if self.decompressed > max_bytes {
            return Err(ExpansionRefused(format!(
                "the object decompresses to more than max_decompressed_bytes ({max_bytes}) bytes; reading stopped there"
            )));
        }
        let compressed = self.compressed.load(Ordering::Relaxed);
        if self.decompressed > ratio_free_bytes
            && self.decompressed > compressed.saturating_mul(max_ratio)
        {
            return Err(ExpansionRefused(format!(
                "the object expands more than max_compression_ratio ({max_ratio}) times: {} bytes from the first {compressed} compressed bytes; reading stopped there",
                self.decompressed
            )));
        }
        Ok(())
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.decompressed += n as u64;
        self.check().map_err(io::Error::other)?;
        Ok(n)
    }
}

/// How an input was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Plain,
    Gzip,
    Zstd,
}

/// Opens `input` for reading text: decompresses it if it is gzip or zstd (within
/// `limits`), and skips a UTF-8 byte order mark. `name` (the object key or file name) is
/// checked against the bytes: a `.gz` or `.zst` name must hold that format.
pub fn open<'a, R: Read + 'a>(
    input: R,
    name: &str,
    limits: Expansion,
) -> Result<(Box<dyn BufRead + 'a>, Encoding), ConvertError> {
    let (head, input) = peek(input, 4).map_err(read_error)?;
    let encoding = if head.starts_with(&GZIP_MAGIC) {
        Encoding::Gzip
    } else if head.starts_with(&ZSTD_MAGIC) {
        Encoding::Zstd
    } else {
        Encoding::Plain
    };
    let lower = name.to_ascii_lowercase();
    let named = if lower.ends_with(".gz") || lower.ends_with(".gzip") {
        Some(Encoding::Gzip)
    } else if lower.ends_with(".zst") || lower.ends_with(".zstd") {
        Some(Encoding::Zstd)
    } else {
        None
    };
    if let Some(named) = named.filter(|n| *n != encoding) {
        return Err(ConvertError::Malformed(format!(
            "the name says {named:?} but the bytes are {encoding:?}"
        )));
    }
    let compressed = Arc::new(AtomicU64::new(0));
    let counted = Counted {
        inner: input,
        count: compressed.clone(),
    };
    let bounded = |decoder: Box<dyn Read + 'a>| -> Box<dyn Read + 'a> {
        Box::new(Bounded {
            inner: decoder,
            compressed: compressed.clone(),
            decompressed: 0,
            limits,
        })
    };
    let decoded: Box<dyn Read + 'a> = match encoding {
        Encoding::Plain => Box::new(counted),
        Encoding::Gzip => bounded(Box::new(MultiGzDecoder::new(counted))),
        Encoding::Zstd => bounded(Box::new(
            zstd::stream::read::Decoder::new(counted)
                .map_err(|e| ConvertError::Malformed(format!("zstd: {e}")))?,
        )),
    };
    let (head, text) = peek(decoded, 3).map_err(read_error)?;
    let text: Box<dyn Read + 'a> = if head.starts_with(&BOM) {
        let mut text = text;
        io::copy(&mut (&mut text).take(3), &mut io::sink()).map_err(read_error)?;
        Box::new(text)
    } else {
        Box::new(text)
    };
    Ok((Box::new(BufReader::with_capacity(BUFFER, text)), encoding))
}

/// The first bytes of an input, and the whole input again.
type Peeked<R> = (Vec<u8>, io::Chain<Cursor<Vec<u8>>, R>);

/// Reads up to `n` bytes (however they arrive) and returns them with a reader that still
/// yields them first.
fn peek<R: Read>(mut input: R, n: usize) -> io::Result<Peeked<R>> {
    let mut head = vec![0u8; n];
    let mut filled = 0;
    while filled < n {
        match input.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(filled);
    Ok((head.clone(), Cursor::new(head).chain(input)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(bytes: &[u8], name: &str) -> Result<(String, Encoding), String> {
        let (mut reader, encoding) =
            open(bytes, name, Expansion::default()).map_err(|e| e.to_string())?;
        let mut text = String::new();
        reader
            .read_to_string(&mut text)
            .map_err(|e| e.to_string())?;
        Ok((text, encoding))
    }

    fn gzip(text: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(text).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn plain_gzip_and_zstd_by_magic() {
        assert_eq!(
            read_all(b"a,b\n", "x.csv"),
            Ok(("a,b\n".into(), Encoding::Plain))
        );
        assert_eq!(
            read_all(&gzip(b"\xef\xbb\xbfa,b\n"), "x.csv.gz"),
            Ok(("a,b\n".into(), Encoding::Gzip))
        );
        assert_eq!(
            read_all(&gzip(b"a,b\n"), "no-extension"),
            Ok(("a,b\n".into(), Encoding::Gzip))
        );
        let zstd = zstd::stream::encode_all(&b"a,b\n"[..], 3).unwrap();
        assert_eq!(
            read_all(&zstd, "x.csv.zst"),
            Ok(("a,b\n".into(), Encoding::Zstd))
        );
        assert_eq!(
            read_all(b"", "empty.csv"),
            Ok((String::new(), Encoding::Plain))
        );
    }

    #[test]
    fn names_must_match_the_bytes() {
        assert_eq!(
            read_all(b"a,b\n", "x.csv.gz").unwrap_err(),
            "the name says Gzip but the bytes are Plain"
        );
    }

    #[test]
    fn corrupt_streams_are_malformed_and_source_failures_are_not() {
        let mut corrupt = gzip(b"a,b\n1,2\n");
        let n = corrupt.len();
        corrupt[n / 2] ^= 0xff;
        let (mut reader, _) = open(&corrupt[..], "x.gz", Expansion::default()).unwrap();
        let error = reader.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(matches!(read_error(error), ConvertError::Malformed(_)));
        let failed = read_error(SourceFailed::io("S3 download: reset"));
        assert!(matches!(failed, ConvertError::Read(_)));
        assert!(failed.is_transient());
    }

    /// Reads `input` through [`open`] with `limits`: the text bytes delivered, and the
    /// error that ended it early, if any.
    fn read_bounded(input: &[u8], name: &str, limits: Expansion) -> (u64, Option<ConvertError>) {
        let (mut reader, _) = open(input, name, limits).unwrap();
        let mut delivered = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return (delivered, None),
                Ok(n) => delivered += n as u64,
                Err(e) => return (delivered, Some(read_error(e))),
            }
        }
    }

    /// 16 MiB of the same CSV row: over 1000 times smaller as gzip.
    fn rows() -> Vec<u8> {
        b"s1,1.5\n".repeat((16 << 20) / 7)
    }

    const SMALL_FREE: Expansion = Expansion {
        max_bytes: u64::MAX,
        max_ratio: 200,
        ratio_free_bytes: 1 << 20,
    };

    #[test]
    fn a_stream_expanding_past_the_ratio_is_cut_off_early() {
        let text = rows();
        for (name, compressed) in [
            ("bomb.csv.gz", gzip(&text)),
            (
                "bomb.csv.zst",
                zstd::stream::encode_all(&text[..], 19).unwrap(),
            ),
        ] {
            assert!(text.len() / compressed.len() > 200, "{name}");
            let (delivered, error) = read_bounded(&compressed, name, SMALL_FREE);
            // The decoder reads ahead, so the compressed bytes read so far may be all of
            // them; either way it stopped far from the 16 MiB.
            let bound = SMALL_FREE
                .ratio_free_bytes
                .max(200 * compressed.len() as u64);
            assert!(
                delivered <= bound && delivered < text.len() as u64 / 2,
                "{name}: {delivered} bytes delivered"
            );
            match error {
                Some(ConvertError::Malformed(reason)) => assert!(
                    reason.starts_with(
                        "the object expands more than max_compression_ratio (200) times: "
                    ),
                    "{name}: {reason}"
                ),
                other => panic!("{name}: {other:?}"),
            }
            // A looser ratio lets the same stream through whole.
            let loose = Expansion {
                max_ratio: 1_000_000,
                ..SMALL_FREE
            };
            let (delivered, error) = read_bounded(&compressed, name, loose);
            assert_eq!(
                (delivered, error.is_none()),
                (text.len() as u64, true),
                "{name}"
            );
        }
    }

    #[test]
    fn small_and_ordinary_streams_are_not_limited() {
        let text = rows();
        // All of it within the ratio-free bytes (the default's 64 MiB).
        let (delivered, error) = read_bounded(&gzip(&text), "x.gz", Expansion::default());
        assert_eq!((delivered, error.is_none()), (text.len() as u64, true));
        // Plain input is limited by max_object_bytes, not here.
        let tight = Expansion {
            max_bytes: 1 << 20,
            ..SMALL_FREE
        };
        let (delivered, error) = read_bounded(&text, "x.csv", tight);
        assert_eq!((delivered, error.is_none()), (text.len() as u64, true));
    }

    #[test]
    fn a_stream_past_max_decompressed_bytes_is_cut_off_there() {
        let text = rows();
        let limits = Expansion {
            max_bytes: 1 << 20,
            max_ratio: 1_000_000,
            ratio_free_bytes: 0,
        };
        let (delivered, error) = read_bounded(&gzip(&text), "x.gz", limits);
        assert!(delivered <= 1 << 20, "{delivered}");
        match error {
            Some(ConvertError::Malformed(reason)) => assert_eq!(
                reason,
                "the object decompresses to more than max_decompressed_bytes (1048576) bytes; reading stopped there"
            ),
            other => panic!("{other:?}"),
        }
    }
}
