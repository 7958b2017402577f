//! How the input arrives: compressed (by its magic), or a byte at a time.

use std::io::{self, Read, Write};

use super::*;

#[test]
fn compressed_inputs_are_read_by_their_magic() {
    let d = dataset(FileFormat::Csv, Partition::IngestDate);
    let text = b"user_id,age\na,1\nb,2\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::stream::encode_all(&text[..], 1).unwrap();
    for (bytes, name) in [(gz, "a.csv.gz"), (zst, "a.csv.zst")] {
        let mut sink = Collect::default();
        let report = convert(
            bytes.as_slice(),
            name,
            &d,
            &lineage(),
            ConvertOptions::sequential(10),
            &mut sink,
            &mut (),
        )
        .unwrap();
        assert_eq!(report.rows_written, 2, "{name}");
    }
    let err = convert(
        &text[..],
        "a.csv.gz",
        &d,
        &lineage(),
        ConvertOptions::sequential(10),
        &mut Collect::default(),
        &mut (),
    )
    .unwrap_err();
    assert!(matches!(err, ConvertError::Malformed(_)), "{err}");
}

#[test]
fn input_arriving_a_byte_at_a_time() {
    struct OneByte<'a>(&'a [u8]);
    impl Read for OneByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }
    let d = dataset(FileFormat::Csv, Partition::IngestDate);
    let input = "\u{feff}user_id,age\n\"u\n1\",1\nu2,2\n";
    let mut sink = Collect::default();
    let report = convert(
        OneByte(input.as_bytes()),
        "in",
        &d,
        &lineage(),
        ConvertOptions::sequential(10),
        &mut sink,
        &mut (),
    )
    .unwrap();
    assert_eq!(report.rows_written, 2);
    assert_eq!(
        strings(&sink.0, 0),
        [Some("u\n1".into()), Some("u2".into())]
    );
}
