//! The on-disk format of the embedded log, version 1. Pure byte layout: no IO here.
//!
//! A log is a directory of segment files named `<first position, 20 digits>.seg`. Each segment
//! starts with a [`HEADER_LEN`]-byte header and is followed by frames, back to back:
//!
//! ```text
//! header  magic "idstrlog" | version u32 | log id (ULID) u128 | base position u64 | crc32 u32
//! frame   magic "IDSR" | payload length u32 | crc32(length ‖ payload) u32 | payload
//! payload position u64 | batch base u64 | appended at (unix ms) i64 | flags u8
//!         | msg id length u16 | msg id | subject length u16 | subject | envelope JSON
//! ```
//!
//! All integers are little-endian. `flags` bit 0 marks the last record of an append (an append
//! group survives recovery only with that record); bit 1 says the record carries a msg id.
//! `batch base` is the position of the first record written by the same fsync: a damaged record
//! followed only by records of its own batch is an unacknowledged torn write, while a damaged
//! record followed by a *later* batch was acknowledged and is real corruption.

use ulid::Ulid;

use crate::Position;

pub const SEGMENT_MAGIC: [u8; 8] = *b"idstrlog";
pub const FORMAT_VERSION: u32 = 1;
pub const HEADER_LEN: u64 = 40;

pub const FRAME_MAGIC: [u8; 4] = *b"IDSR";
pub const FRAME_HEADER_LEN: usize = 12;

/// The largest envelope JSON one event may have.
pub const MAX_EVENT_JSON: usize = crate::MAX_EVENT_BYTES;
/// The longest idempotency key accepted (its msg ids add `:<index>`).
pub const MAX_KEY_LEN: usize = 512;
/// The longest subject accepted.
pub const MAX_SUBJECT_LEN: usize = 1024;
const FIXED_PAYLOAD_LEN: usize = 8 + 8 + 8 + 1 + 2 + 2;
/// No valid payload is longer; a length field above it is damage, not a big record.
pub const MAX_PAYLOAD_LEN: usize =
    FIXED_PAYLOAD_LEN + MAX_KEY_LEN + 32 + MAX_SUBJECT_LEN + MAX_EVENT_JSON;

pub const FLAG_END_OF_APPEND: u8 = 1;
pub const FLAG_HAS_MSG_ID: u8 = 2;

/// The file name of the segment whose first record is at `base`.
pub fn segment_file_name(base: Position) -> String {
    format!("{base:020}.seg")
}

/// The base position encoded in a segment file name, if it is one.
pub fn parse_segment_file_name(name: &str) -> Option<Position> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub log_id: Ulid,
    pub base: Position,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut out = [0u8; HEADER_LEN as usize];
        out[0..8].copy_from_slice(&SEGMENT_MAGIC);
        out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[12..28].copy_from_slice(&u128::from(self.log_id).to_le_bytes());
        out[28..36].copy_from_slice(&self.base.to_le_bytes());
        let crc = crc32fast::hash(&out[0..36]);
        out[36..40].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads a header.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderError> {
        let damaged = |why: String| Err(HeaderError::Damaged(why));
        if bytes.len() < HEADER_LEN as usize {
            return damaged(format!(
                "the header is {} bytes, shorter than {HEADER_LEN}",
                bytes.len()
            ));
        }
        if bytes[0..8] != SEGMENT_MAGIC {
            return damaged("not an idstream log segment (bad magic)".to_owned());
        }
        if crc32fast::hash(&bytes[0..36]) != u32_at(bytes, 36) {
            return damaged("the header checksum does not match".to_owned());
        }
        let version = u32_at(bytes, 8);
        if version != FORMAT_VERSION {
            return Err(HeaderError::UnsupportedVersion(version));
        }
        let log_id = Ulid::from(u128::from_le_bytes(
            bytes[12..28].try_into().expect("16 bytes"),
        ));
        Ok(SegmentHeader {
            log_id,
            base: u64_at(bytes, 28),
        })
    }
}

/// Why a segment header was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// The bytes are not an intact header.
    Damaged(String),
    /// An intact header of a format this build cannot read (written by a newer idstream).
    UnsupportedVersion(u32),
}

/// One record as stored, borrowing from the bytes it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub position: Position,
    /// The position of the first record written in the same fsync batch.
    pub batch_base: Position,
    /// Wall-clock append time in unix milliseconds, for the dedup window after a restart.
    pub appended_at_ms: i64,
    pub end_of_append: bool,
    pub msg_id: Option<&'a str>,
    pub subject: &'a str,
    pub json: &'a [u8],
}

impl Record<'_> {
    pub fn payload_len(&self) -> usize {
        FIXED_PAYLOAD_LEN + self.msg_id.map_or(0, str::len) + self.subject.len() + self.json.len()
    }

    /// Appends the framed record to `out`. Callers have checked the limits (key, subject and
    /// JSON lengths), so the lengths fit their fields.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let payload_len =
            u32::try_from(self.payload_len()).expect("a payload is at most MAX_PAYLOAD_LEN");
        let start = out.len();
        out.extend_from_slice(&FRAME_MAGIC);
        out.extend_from_slice(&payload_len.to_le_bytes());
        out.extend_from_slice(&[0; 4]); // the checksum, filled in below
        out.extend_from_slice(&self.position.to_le_bytes());
        out.extend_from_slice(&self.batch_base.to_le_bytes());
        out.extend_from_slice(&self.appended_at_ms.to_le_bytes());
        let mut flags = 0;
        if self.end_of_append {
            flags |= FLAG_END_OF_APPEND;
        }
        if self.msg_id.is_some() {
            flags |= FLAG_HAS_MSG_ID;
        }
        out.push(flags);
        let msg_id = self.msg_id.unwrap_or("");
        out.extend_from_slice(
            &u16::try_from(msg_id.len())
                .expect("msg ids are short")
                .to_le_bytes(),
        );
        out.extend_from_slice(msg_id.as_bytes());
        out.extend_from_slice(
            &u16::try_from(self.subject.len())
                .expect("subjects are short")
                .to_le_bytes(),
        );
        out.extend_from_slice(self.subject.as_bytes());
        out.extend_from_slice(self.json);
        let crc = frame_crc(&out[start + 4..start + 8], &out[start + FRAME_HEADER_LEN..]);
        out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
    }
}

/// What the bytes at the start of a slice hold.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameCheck {
    /// A whole frame with a good checksum; its payload is `bytes[FRAME_HEADER_LEN..len]`.
    Complete { len: usize },
    /// The bytes end before the frame does: a frame header claims more than is there.
    Truncated,
    /// Not a frame: wrong magic, an impossible length or a checksum mismatch.
    Bad(&'static str),
}

/// Checks the frame at the start of `bytes` without decoding its payload.
pub fn check_frame(bytes: &[u8]) -> FrameCheck {
    if bytes.len() < FRAME_HEADER_LEN {
        // Even a short prefix must look like a frame to count as a torn one.
        return if FRAME_MAGIC.starts_with(&bytes[..bytes.len().min(4)]) {
            FrameCheck::Truncated
        } else {
            FrameCheck::Bad("bad frame magic")
        };
    }
    if bytes[0..4] != FRAME_MAGIC {
        return FrameCheck::Bad("bad frame magic");
    }
    let payload_len = u32_at(bytes, 4) as usize;
    if !(FIXED_PAYLOAD_LEN..=MAX_PAYLOAD_LEN).contains(&payload_len) {
        return FrameCheck::Bad("impossible frame length");
    }
    let len = FRAME_HEADER_LEN + payload_len;
    if bytes.len() < len {
        return FrameCheck::Truncated;
    }
    if frame_crc(&bytes[4..8], &bytes[FRAME_HEADER_LEN..len]) != u32_at(bytes, 8) {
        return FrameCheck::Bad("frame checksum mismatch");
    }
    FrameCheck::Complete { len }
}

/// Decodes a payload whose frame passed [`check_frame`]. An error here means a frame with a
/// good checksum and a malformed body: written by a bug, not by a crash.
pub fn decode_payload(payload: &[u8]) -> Result<Record<'_>, &'static str> {
    if payload.len() < FIXED_PAYLOAD_LEN {
        return Err("payload shorter than its fixed fields");
    }
    let position = u64_at(payload, 0);
    let batch_base = u64_at(payload, 8);
    let appended_at_ms = i64::from_le_bytes(payload[16..24].try_into().expect("8 bytes"));
    let flags = payload[24];
    let mut at = 25;
    let take_str = |at: &mut usize| -> Result<&str, &'static str> {
        let len = u16::from_le_bytes(
            payload
                .get(*at..*at + 2)
                .ok_or("payload cut in a length")?
                .try_into()
                .expect("2"),
        );
        let start = *at + 2;
        let end = start + len as usize;
        let bytes = payload.get(start..end).ok_or("payload cut in a string")?;
        *at = end;
        std::str::from_utf8(bytes).map_err(|_| "a string field is not UTF-8")
    };
    let msg_id = take_str(&mut at)?;
    let subject = take_str(&mut at)?;
    Ok(Record {
        position,
        batch_base,
        appended_at_ms,
        end_of_append: flags & FLAG_END_OF_APPEND != 0,
        msg_id: (flags & FLAG_HAS_MSG_ID != 0).then_some(msg_id),
        subject,
        json: &payload[at..],
    })
}

fn frame_crc(len_field: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(len_field);
    hasher.update(payload);
    hasher.finalize()
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(msg_id: Option<&str>) -> Record<'_> {
        Record {
            position: 42,
            batch_base: 40,
            appended_at_ms: 1_700_000_000_123,
            end_of_append: true,
            msg_id,
            subject: "idstream.events.acme.tenant.acme",
            json: br#"{"a":1}"#,
        }
    }

    #[test]
    fn a_record_survives_encoding_with_and_without_a_msg_id() {
        for msg_id in [None, Some("key:0"), Some("")] {
            let mut out = Vec::new();
            record(msg_id).encode_into(&mut out);
            assert_eq!(out.len(), FRAME_HEADER_LEN + record(msg_id).payload_len());
            assert_eq!(check_frame(&out), FrameCheck::Complete { len: out.len() });
            assert_eq!(
                decode_payload(&out[FRAME_HEADER_LEN..]).unwrap(),
                record(msg_id)
            );
        }
    }

    #[test]
    fn a_cut_frame_is_truncated_and_a_flipped_byte_is_bad() {
        let mut out = Vec::new();
        record(Some("k:1")).encode_into(&mut out);
        for cut in [1, 5, FRAME_HEADER_LEN, out.len() - 1] {
            assert_eq!(
                check_frame(&out[..cut]),
                FrameCheck::Truncated,
                "cut at {cut}"
            );
        }
        for at in [0, 5, 9, FRAME_HEADER_LEN + 3, out.len() - 1] {
            let mut damaged = out.clone();
            damaged[at] ^= 0x40;
            assert!(
                matches!(
                    check_frame(&damaged),
                    FrameCheck::Bad(_) | FrameCheck::Truncated
                ),
                "flip at {at}"
            );
            assert_ne!(
                check_frame(&damaged),
                FrameCheck::Complete { len: out.len() },
                "flip at {at}"
            );
        }
        assert!(matches!(
            check_frame(b"garbage!!!!!!!!!"),
            FrameCheck::Bad(_)
        ));
        assert!(matches!(check_frame(b"xy"), FrameCheck::Bad(_)));
    }

    #[test]
    fn a_header_round_trips_and_rejects_damage() {
        let header = SegmentHeader {
            log_id: Ulid::from_parts(1, 2),
            base: 1001,
        };
        let bytes = header.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
        let mut damaged = bytes;
        damaged[30] ^= 1;
        assert!(SegmentHeader::decode(&damaged).is_err());
        assert!(SegmentHeader::decode(&bytes[..20]).is_err());
    }

    #[test]
    fn segment_names_sort_by_position_and_parse_back() {
        assert_eq!(segment_file_name(1), "00000000000000000001.seg");
        assert_eq!(
            parse_segment_file_name(&segment_file_name(123_456)),
            Some(123_456)
        );
        assert_eq!(parse_segment_file_name("LOCK"), None);
        assert_eq!(
            parse_segment_file_name("00000000000000000001.seg.tmp"),
            None
        );
    }
}
