//! How every backend writes a record of the outbox and the DLQ: JSON,
//! packed with LZ4 when it is large. sled keeps it as a value, PostgreSQL
//! in a `bytea` column; the bytes are the same.
//!
//! sled writes a log entry over a quarter of its 512 KiB segment to a file
//! of its own (a "blob": created, written, synced and later deleted). A
//! delivery of a 64 KB entity is ~140 KB of JSON (the event, and the body
//! that holds it again, escaped), so every write of one made a file. JSON
//! this repetitive packs to a fifth or less, which also takes that much
//! off every log write and page of the database (and, for PostgreSQL, off
//! the bytes on the wire). Small records stay plain JSON: packing one costs
//! more than the bytes it saves.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::store::error::StoreError;

/// Records longer than this are packed. A delivery of a 1 KB entity is
/// ~3 KB; a grave of 32 such letters is ~50 KB.
const PACK_ABOVE: usize = 8 * 1024;

/// The first byte of a packed record, followed by the JSON's length (u32,
/// little endian) and the LZ4 block. A JSON record starts with `{` or `[`.
pub(crate) const PACKED: u8 = 0x01;

/// The longest JSON a packed record may claim to hold: a damaged length
/// must not make the reader allocate gigabytes.
const MAX_UNPACKED: usize = 256 << 20;

/// The record for `value`.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Our records are plain structs of strings, numbers and JSON values,
    // which always serialise.
    let json = serde_json::to_vec(value).unwrap_or_default();
    pack(json)
}

/// Reads a record written by [`encode`] (or by a version that wrote only
/// JSON).
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(
    key: &[u8],
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(&json(key, bytes)?).map_err(|source| StoreError::Corrupt {
        key: shown(key),
        source,
    })
}

/// The JSON of a record: the record itself, or what its packing holds.
pub(crate) fn json<'a>(key: &[u8], bytes: &'a [u8]) -> Result<Cow<'a, [u8]>, StoreError> {
    let Some((&PACKED, packed)) = bytes.split_first() else {
        return Ok(Cow::Borrowed(bytes));
    };
    let unreadable = |reason: String| StoreError::Unpacked {
        key: shown(key),
        reason,
    };
    let (length, block) = packed
        .split_first_chunk::<4>()
        .ok_or_else(|| unreadable("it ends before its length".into()))?;
    let length = u32::from_le_bytes(*length) as usize;
    if length > MAX_UNPACKED {
        return Err(unreadable(format!(
            "it claims {length} bytes, over {MAX_UNPACKED}"
        )));
    }
    let mut json = vec![0; length];
    let written = lz4_flex::block::decompress_into(block, &mut json)
        .map_err(|e| unreadable(e.to_string()))?;
    if written != length {
        return Err(unreadable(format!(
            "it holds {written} bytes, not the {length} it claims"
        )));
    }
    Ok(Cow::Owned(json))
}

/// `json` as it is stored.
fn pack(json: Vec<u8>) -> Vec<u8> {
    let Ok(length) = u32::try_from(json.len()) else {
        return json;
    };
    if json.len() <= PACK_ABOVE {
        return json;
    }
    let mut packed = vec![0; 5 + lz4_flex::block::get_maximum_output_size(json.len())];
    packed[0] = PACKED;
    packed[1..5].copy_from_slice(&length.to_le_bytes());
    match lz4_flex::block::compress_into(&json, &mut packed[5..]) {
        // Nothing gained (bytes that do not repeat): kept as JSON, which
        // reads without a copy.
        Ok(written) if 5 + written < json.len() => {
            packed.truncate(5 + written);
            packed
        }
        _ => json,
    }
}

pub(crate) fn shown(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use serde_json::{json, Value};

    fn large() -> Value {
        let rows: Vec<Value> = (0..400)
            .map(|i| json!({"id": i, "status": "shipped", "note": "a \"quoted\" {{ x }}"}))
            .collect();
        json!({"rows": rows})
    }

    #[test]
    fn a_small_record_is_plain_json() {
        let value = json!({"id": "d-1", "attempts": []});
        let bytes = encode(&value);
        assert_eq!(bytes, serde_json::to_vec(&value).unwrap());
        assert_eq!(decode::<Value>(b"k", &bytes).unwrap(), value);
    }

    #[test]
    fn a_large_record_is_packed_and_reads_back_whole() {
        let value = large();
        let plain = serde_json::to_vec(&value).unwrap();
        let bytes = encode(&value);
        assert_eq!(bytes[0], PACKED);
        assert!(
            bytes.len() * 4 < plain.len(),
            "{} of {}",
            bytes.len(),
            plain.len()
        );
        assert_eq!(decode::<Value>(b"k", &bytes).unwrap(), value);
        // Records written before packing existed still read.
        assert_eq!(decode::<Value>(b"k", &plain).unwrap(), value);
    }

    #[test]
    fn bytes_that_do_not_pack_stay_json() {
        let mut random = vec![0u8; 15_000];
        getrandom::fill(&mut random).unwrap();
        let noise = base64::engine::general_purpose::STANDARD.encode(random);
        let value = json!({ "noise": noise });
        let bytes = encode(&value);
        assert_eq!(bytes, serde_json::to_vec(&value).unwrap());
        assert_eq!(decode::<Value>(b"k", &bytes).unwrap(), value);
    }

    #[test]
    fn a_damaged_packed_record_names_its_key_and_the_damage() {
        let mut bytes = encode(&large());
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![PACKED, 1, 2], "ends before its length"),
            (
                [&[PACKED][..], &u32::MAX.to_le_bytes()[..]].concat(),
                "over",
            ),
            (
                {
                    let cut = bytes.len() / 2;
                    bytes.truncate(cut);
                    bytes
                },
                "record k1",
            ),
        ];
        for (damaged, expected) in cases {
            let error = decode::<Value>(b"k1", &damaged).unwrap_err().to_string();
            assert!(error.contains("record k1"), "{error}");
            assert!(error.contains(expected), "{expected}: {error}");
        }
    }
}
