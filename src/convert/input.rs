//! Turning a byte stream into text input: gzip and zstd are recognised by their magic
//! bytes (and a `.gz`/`.zst` name must hold what it says), a UTF-8 byte order mark is
//! dropped, and read errors are told apart: a failed download is worth a retry, a corrupt
//! compressed stream is not.

use std::fmt;
use std::io::{self, BufRead, BufReader, Cursor, Read};

use flate2::read::MultiGzDecoder;

use super::ConvertError;

/// Read buffer of the converter's input.
const BUFFER: usize = 256 * 1024;
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

/// Classifies a read error: the source failing is transient, anything else (a corrupt
/// gzip or zstd stream) means the file is bad.
pub fn read_error(error: io::Error) -> ConvertError {
    let from_source = error
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<SourceFailed>().is_some());
    if from_source {
        ConvertError::Read(error)
    } else {
        ConvertError::Malformed(format!("unreadable input: {error}"))
    }
}

/// How an input was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Plain,
    Gzip,
    Zstd,
}

/// Opens `input` for reading text: decompresses it if it is gzip or zstd, and skips a
/// UTF-8 byte order mark. `name` (the object key or file name) is checked against the
/// bytes: a `.gz` or `.zst` name must hold that format.
pub fn open<'a, R: Read + 'a>(
    input: R,
    name: &str,
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
    let decoded: Box<dyn Read + 'a> = match encoding {
        Encoding::Plain => Box::new(input),
        Encoding::Gzip => Box::new(MultiGzDecoder::new(input)),
        Encoding::Zstd => Box::new(
            zstd::stream::read::Decoder::new(input)
                .map_err(|e| ConvertError::Malformed(format!("zstd: {e}")))?,
        ),
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
        let (mut reader, encoding) = open(bytes, name).map_err(|e| e.to_string())?;
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
        let (mut reader, _) = open(&corrupt[..], "x.gz").unwrap();
        let error = reader.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(matches!(read_error(error), ConvertError::Malformed(_)));
        let failed = read_error(SourceFailed::io("S3 download: reset"));
        assert!(matches!(failed, ConvertError::Read(_)));
        assert!(failed.is_transient());
    }
}
