//! Opening a log directory: validate every segment, rebuild the in-memory indexes, and cut a
//! torn tail — or refuse to open when acknowledged events are damaged.
//!
//! A crash can only damage what the writer had not yet fsynced: the end of the last segment.
//! So a damaged or incomplete frame is a *torn tail* when nothing of a later fsync batch follows
//! it (every frame names the first position of its batch), and it is cut away with a warning.
//! A damaged frame followed by a later batch, or anywhere but the last segment, sits among
//! acknowledged events: that is corruption, and opening fails rather than silently dropping them.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ulid::Ulid;

use super::format::{
    FORMAT_VERSION, FRAME_HEADER_LEN, FrameCheck, HEADER_LEN, HeaderError, Record, SegmentHeader,
    check_frame, decode_payload, parse_segment_file_name, segment_file_name,
};
use super::{Entry, Index, Segment, io_error, sync_dir, unix_millis};
use crate::{LogError, Position};

/// An idempotency key appended recently enough to still count inside the dedup window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentKey {
    pub key: String,
    pub first: Position,
    pub last: Position,
    pub appended_at_ms: i64,
}

pub struct Recovered {
    pub log_id: Ulid,
    pub index: Index,
    /// Length of the last segment, where the writer continues.
    pub tail_len: u64,
    pub recent_keys: Vec<RecentKey>,
}

/// Creates a segment atomically: header written and fsynced under a temporary name, then renamed,
/// so a segment file that exists always has a whole header.
pub fn create_segment(dir: &Path, header: SegmentHeader) -> io::Result<(PathBuf, File)> {
    use std::io::Write;
    let name = segment_file_name(header.base);
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    file.write_all(&header.encode())?;
    file.sync_all()?;
    fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    Ok((path, file))
}

/// How [`recover`] treats the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The writer's open: create an empty log where there is none, remove interrupted segment
    /// creations and cut a torn tail.
    Repair,
    /// A snapshot beside a writer that may be running: change nothing, refuse a directory
    /// without a log, and stop before an incomplete tail (which may be a write in progress).
    ReadOnly,
}

/// Scans `dir` and returns the log it holds, creating an empty one if it holds none.
pub fn recover(dir: &Path, dedup_window: Duration, mode: Mode) -> Result<Recovered, LogError> {
    let mut found = Vec::new();
    let listing = fs::read_dir(dir).map_err(|e| io_error("list the log directory", dir, e))?;
    for entry in listing {
        let entry = entry.map_err(|e| io_error("list the log directory", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(base) = parse_segment_file_name(name) {
            found.push((base, entry.path()));
        } else if name.ends_with(".seg.tmp") && mode == Mode::Repair {
            // A segment whose creation was interrupted before its rename: it never held events.
            fs::remove_file(entry.path()).map_err(|e| io_error("remove", &entry.path(), e))?;
        }
    }
    found.sort();

    if found.is_empty() && mode == Mode::ReadOnly {
        return Err(LogError::Misconfigured(format!(
            "there is no embedded log in {}",
            dir.display()
        )));
    }
    if found.is_empty() {
        let log_id = Ulid::new();
        let (path, file) = create_segment(dir, SegmentHeader { log_id, base: 1 })
            .map_err(|e| io_error("create the first segment in", dir, e))?;
        let index = Index {
            segments: vec![Segment {
                path: path.into(),
                file: Arc::new(file),
            }],
            entries: Vec::new(),
            streams: HashMap::new(),
        };
        return Ok(Recovered {
            log_id,
            index,
            tail_len: HEADER_LEN,
            recent_keys: Vec::new(),
        });
    }

    let mut scan = Scan {
        index: Index {
            segments: Vec::new(),
            entries: Vec::new(),
            streams: HashMap::new(),
        },
        recent_keys: Vec::new(),
        now_ms: unix_millis(),
        window_ms: i64::try_from(dedup_window.as_millis()).unwrap_or(i64::MAX),
    };
    let mut log_id = None;
    let mut tail_len = HEADER_LEN;
    let count = found.len();
    for (i, (base, path)) in found.into_iter().enumerate() {
        let file = OpenOptions::new()
            .read(true)
            .write(mode == Mode::Repair)
            .open(&path)
            .map_err(|e| io_error("open", &path, e))?;
        let mut header = [0u8; HEADER_LEN as usize];
        let header = read_prefix(&file, &mut header)
            .map_err(|e| io_error("read the header of", &path, e))?;
        let header = match SegmentHeader::decode(header) {
            Ok(header) => header,
            Err(HeaderError::Damaged(why)) => return Err(corrupt(&path, 0, &why)),
            // Not damage: the directory was written by a newer idstream, and retrying with this
            // build cannot help.
            Err(HeaderError::UnsupportedVersion(version)) => {
                return Err(LogError::Misconfigured(format!(
                    "segment {} is in log format version {version}; this build reads version \
                     {FORMAT_VERSION}. Run the idstream release that wrote it",
                    path.display()
                )));
            }
        };
        if header.base != base {
            return Err(corrupt(
                &path,
                0,
                &format!("its header says it starts at position {}", header.base),
            ));
        }
        if *log_id.get_or_insert(header.log_id) != header.log_id {
            return Err(corrupt(
                &path,
                0,
                "it belongs to another log (different log id)",
            ));
        }
        let next = scan.index.entries.len() as u64 + 1;
        if base != next {
            return Err(corrupt(
                &path,
                0,
                &format!(
                    "it starts at position {base}, but the log before it ends at {}",
                    next - 1
                ),
            ));
        }
        let segment = u32::try_from(i).expect("fewer than 4 billion segments");
        tail_len = scan.segment(&file, &path, segment, i + 1 == count, mode)?;
        scan.index.segments.push(Segment {
            path: path.into(),
            file: Arc::new(file),
        });
    }
    let log_id = log_id.expect("at least one segment was read");
    Ok(Recovered {
        log_id,
        index: scan.index,
        tail_len,
        recent_keys: scan.recent_keys,
    })
}

/// A record read but not yet part of the index: its append group has not ended yet.
struct Pending {
    entry: Entry,
    subject: String,
    msg_id: Option<String>,
    appended_at_ms: i64,
}

struct Scan {
    index: Index,
    recent_keys: Vec<RecentKey>,
    now_ms: i64,
    window_ms: i64,
}

/// Why the scan of a segment stopped before its end.
struct Damage {
    offset: u64,
    why: &'static str,
}

impl Scan {
    /// Reads one segment's frames into the index; returns the segment's length afterwards.
    fn segment(
        &mut self,
        file: &File,
        path: &Path,
        segment: u32,
        last: bool,
        mode: Mode,
    ) -> Result<u64, LogError> {
        let file_len = file
            .metadata()
            .map_err(|e| io_error("stat", path, e))?
            .len();
        let mut reader = BufReader::with_capacity(1 << 20, file);
        reader
            .seek(SeekFrom::Start(HEADER_LEN))
            .map_err(|e| io_error("seek in", path, e))?;

        let mut offset = HEADER_LEN;
        // Where the append group being read started: an incomplete group is cut from here.
        let mut group_start = HEADER_LEN;
        let mut pending: Vec<Pending> = Vec::new();
        let mut frame = Vec::new();
        let damage = loop {
            if offset == file_len {
                break None;
            }
            match read_frame(&mut reader, &mut frame, file_len - offset)
                .map_err(|e| io_error("read", path, e))?
            {
                FrameCheck::Complete { len } => {
                    let record = decode_payload(&frame[FRAME_HEADER_LEN..len]).map_err(|why| {
                        corrupt(
                            path,
                            offset,
                            &format!("the record has a valid checksum but a malformed body: {why}"),
                        )
                    })?;
                    let expected = self.index.entries.len() as u64 + pending.len() as u64 + 1;
                    if record.position != expected || record.batch_base > record.position {
                        return Err(corrupt(
                            path,
                            offset,
                            &format!(
                                "the record holds position {} where {expected} was expected",
                                record.position
                            ),
                        ));
                    }
                    pending.push(Pending {
                        entry: Entry {
                            offset,
                            len: len as u32,
                            segment,
                        },
                        subject: record.subject.to_owned(),
                        msg_id: record.msg_id.map(str::to_owned),
                        appended_at_ms: record.appended_at_ms,
                    });
                    offset += len as u64;
                    if record.end_of_append {
                        self.commit(&mut pending);
                        group_start = offset;
                    }
                }
                FrameCheck::Truncated => {
                    break Some(Damage {
                        offset,
                        why: "the record is cut short",
                    });
                }
                FrameCheck::Bad(why) => break Some(Damage { offset, why }),
            }
        };

        if let Some(Damage { offset, why }) = damage {
            let expected = self.index.entries.len() as u64 + pending.len() as u64 + 1;
            if !last {
                return Err(corrupt(
                    path,
                    offset,
                    &format!("{why}; later segments hold acknowledged events"),
                ));
            }
            if let Some(later) = later_batch_after(file, offset, file_len, expected)
                .map_err(|e| io_error("read", path, e))?
            {
                return Err(corrupt(
                    path,
                    offset,
                    &format!("{why}, yet a later acknowledged write follows at offset {later}"),
                ));
            }
        } else if pending.is_empty() {
            return Ok(file_len);
        } else if !last {
            return Err(corrupt(
                path,
                group_start,
                "an append group is cut off by the end of a segment that is not the last",
            ));
        }
        // A snapshot stops before the tail: beside a running writer it is a batch being written.
        if mode == Mode::ReadOnly {
            return Ok(group_start);
        }
        // A torn tail: an interrupted write that was never acknowledged. Cut it, including the
        // complete records of an append group whose end did not make it to disk.
        let cut = file_len - group_start;
        tracing::warn!(
            segment = %path.display(),
            offset = group_start,
            cut_bytes = cut,
            dropped_records = pending.len(),
            "embedded log: cutting a torn tail left by an interrupted write"
        );
        file.set_len(group_start)
            .map_err(|e| io_error("truncate", path, e))?;
        file.sync_all().map_err(|e| io_error("sync", path, e))?;
        Ok(group_start)
    }

    /// Moves a finished append group into the index.
    fn commit(&mut self, pending: &mut Vec<Pending>) {
        let first = self.index.entries.len() as u64 + 1;
        let last = first + pending.len() as u64 - 1;
        if let Some(head) = pending.first()
            && let Some(key) = head.msg_id.as_deref().and_then(|id| id.strip_suffix(":0"))
            && self.now_ms.saturating_sub(head.appended_at_ms) < self.window_ms
        {
            self.recent_keys.push(RecentKey {
                key: key.to_owned(),
                first,
                last,
                appended_at_ms: head.appended_at_ms,
            });
        }
        for (i, p) in pending.drain(..).enumerate() {
            let position = first + i as u64;
            self.index.entries.push(p.entry);
            match self.index.streams.get_mut(p.subject.as_str()) {
                Some(positions) => positions.push(position),
                None => {
                    self.index.streams.insert(p.subject, vec![position]);
                }
            }
        }
    }
}

/// Reads the frame at the reader's position into `frame` (header and payload) and checks it.
/// `remaining` is how many bytes the file holds from here.
fn read_frame(
    reader: &mut impl Read,
    frame: &mut Vec<u8>,
    remaining: u64,
) -> io::Result<FrameCheck> {
    let header_len = (FRAME_HEADER_LEN as u64).min(remaining) as usize;
    frame.resize(header_len, 0);
    reader.read_exact(frame)?;
    if header_len < FRAME_HEADER_LEN {
        return Ok(check_frame(frame));
    }
    // The header alone tells a bad magic or an impossible length; a complete header followed by
    // too few bytes is a cut frame.
    match check_frame(frame) {
        FrameCheck::Bad(why) => return Ok(FrameCheck::Bad(why)),
        FrameCheck::Complete { .. } => unreachable!("a frame header alone is never a whole frame"),
        FrameCheck::Truncated => {}
    }
    let len =
        FRAME_HEADER_LEN + u32::from_le_bytes(frame[4..8].try_into().expect("4 bytes")) as usize;
    if len as u64 > remaining {
        return Ok(FrameCheck::Truncated);
    }
    frame.resize(len, 0);
    reader.read_exact(&mut frame[FRAME_HEADER_LEN..])?;
    Ok(check_frame(frame))
}

/// Looks past damage at `offset` for a valid frame of a fsync batch that started after the
/// damaged record's position `expected`: its presence proves the damaged record was acknowledged.
/// Frames of the damaged record's own batch (written by the same unfinished fsync) do not count.
fn later_batch_after(
    file: &File,
    offset: u64,
    file_len: u64,
    expected: Position,
) -> io::Result<Option<u64>> {
    use std::os::unix::fs::FileExt;
    let start = offset + 1;
    if start >= file_len {
        return Ok(None);
    }
    let mut rest = vec![0u8; (file_len - start) as usize];
    file.read_exact_at(&mut rest, start)?;
    for i in 0..rest.len().saturating_sub(FRAME_HEADER_LEN) {
        if rest[i..i + 4] != super::format::FRAME_MAGIC {
            continue;
        }
        if let FrameCheck::Complete { len } = check_frame(&rest[i..])
            && let Ok(Record { batch_base, .. }) =
                decode_payload(&rest[i + FRAME_HEADER_LEN..i + len])
            && batch_base > expected
        {
            return Ok(Some(start + i as u64));
        }
    }
    Ok(None)
}

/// Reads up to `buf.len()` bytes from the start of the file (fewer if it is shorter).
fn read_prefix<'a>(mut file: &File, buf: &'a mut [u8]) -> io::Result<&'a [u8]> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(&buf[..filled])
}

fn corrupt(path: &Path, offset: u64, why: &str) -> LogError {
    LogError::Corrupt(format!(
        "segment {} at offset {offset}: {why}",
        path.display()
    ))
}
