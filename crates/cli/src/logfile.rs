//! The log file of `idstream log export` / `log import` and of backups: the stored events of a
//! log, exactly, one JSON object per line (the format is documented in `docs/log-file.md`).
//!
//! ```text
//! {"format":"idstream-log","version":1,"log_id":"…","backend":"embedded","exported_at":"…"}
//! {"position":1,"subject":"idstream.events.…","msg_id":"…","bytes":"<base64url of the stored bytes>"}
//! …
//! {"end":{"events":N,"last":N,"chain":"<hex of the tamper-evidence chain link after N>"}}
//! ```
//!
//! A reader checks that positions run from 1 without a gap, recomputes the chain and compares
//! it and the count with the end line; a file without its end line is incomplete.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use idstream_chain::Chain;
use idstream_eventlog::{MAX_EVENT_BYTES, Position, RawEvent};
use serde::{Deserialize, Serialize};

pub const FORMAT: &str = "idstream-log";
pub const VERSION: u32 = 1;
/// No valid line is longer: an event's base64 and its subject and msg id, with room to spare.
const MAX_LINE: u64 = (MAX_EVENT_BYTES as u64) * 4 / 3 + 16 * 1024;

/// The first line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Header {
    pub format: String,
    pub version: u32,
    /// The identity of the log it was exported from (`EventLog::log_id`).
    pub log_id: String,
    /// `embedded` or `jetstream`.
    pub backend: String,
    /// RFC 3339.
    pub exported_at: String,
}

/// The last line's content.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct End {
    pub events: u64,
    pub last: Position,
    #[serde(with = "hex_hash")]
    pub chain: [u8; 32],
}

#[derive(Serialize, Deserialize)]
struct Line {
    position: Position,
    subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    msg_id: Option<String>,
    bytes: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndLine {
    end: End,
}

mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(hash: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(hash))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&text, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

/// Writes a log file: the header, then events in position order from 1, then [`Writer::finish`].
pub struct Writer {
    out: BufWriter<File>,
    path: PathBuf,
    chain: Chain,
    events: u64,
}

impl Writer {
    /// Creates `path`, which must not exist.
    pub fn create(path: &Path, header: &Header) -> anyhow::Result<Writer> {
        // 0600: the events hold personal data (encrypted) and blind indexes of addresses.
        let file = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        serde_json::to_writer(&mut out, header)?;
        out.write_all(b"\n")?;
        Ok(Writer {
            out,
            path: path.to_owned(),
            chain: Chain::default(),
            events: 0,
        })
    }

    pub fn write(&mut self, event: &RawEvent) -> anyhow::Result<()> {
        anyhow::ensure!(
            event.position == self.chain.position + 1,
            "the log has a gap: position {} follows {}",
            event.position,
            self.chain.position
        );
        self.chain
            .push(event.position, &event.subject, &event.bytes);
        self.events += 1;
        let line = Line {
            position: event.position,
            subject: event.subject.clone(),
            msg_id: event.msg_id.clone(),
            bytes: URL_SAFE_NO_PAD.encode(&event.bytes),
        };
        serde_json::to_writer(&mut self.out, &line)?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    /// Writes the end line and makes the file durable.
    pub fn finish(mut self) -> anyhow::Result<End> {
        let end = End {
            events: self.events,
            last: self.chain.position,
            chain: self.chain.link,
        };
        serde_json::to_writer(&mut self.out, &EndLine { end })?;
        self.out.write_all(b"\n")?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| anyhow::anyhow!("writing {}: {}", self.path.display(), e.error()))?;
        file.sync_all()
            .with_context(|| format!("syncing {}", self.path.display()))?;
        Ok(end)
    }
}

/// Reads a log file page by page, checking it as it goes.
pub struct Reader {
    lines: BufReader<File>,
    path: PathBuf,
    pub header: Header,
    chain: Chain,
    end: Option<End>,
    line_number: u64,
}

impl Reader {
    pub fn open(path: &Path) -> anyhow::Result<Reader> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut reader = Reader {
            lines: BufReader::with_capacity(1 << 20, file),
            path: path.to_owned(),
            header: Header {
                format: String::new(),
                version: 0,
                log_id: String::new(),
                backend: String::new(),
                exported_at: String::new(),
            },
            chain: Chain::default(),
            end: None,
            line_number: 0,
        };
        let first = reader
            .line()?
            .ok_or_else(|| anyhow::anyhow!("{} is empty: not a log file", path.display()))?;
        let header: Header = serde_json::from_slice(&first).map_err(|_| {
            anyhow::anyhow!(
                "{} is not an idstream log file (its first line is no log file header)",
                path.display()
            )
        })?;
        anyhow::ensure!(
            header.format == FORMAT,
            "{} is not an idstream log file (format {:?})",
            path.display(),
            header.format
        );
        anyhow::ensure!(
            header.version == VERSION,
            "{} is version {} of the log file format; this build reads version {VERSION}",
            path.display(),
            header.version
        );
        reader.header = header;
        Ok(reader)
    }

    /// Reads the whole file, checking every line, the chain and the end line; returns the end.
    pub fn check(path: &Path) -> anyhow::Result<(Header, End)> {
        let mut reader = Reader::open(path)?;
        while !reader.next_page(4096)?.is_empty() {}
        let end = reader
            .end
            .expect("next_page returns empty only at a checked end");
        Ok((reader.header, end))
    }

    /// The next line without its newline, or None at the end of the file.
    fn line(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        let mut line = Vec::new();
        let read = (&mut self.lines)
            .take(MAX_LINE + 1)
            .read_until(b'\n', &mut line)
            .with_context(|| format!("reading {}", self.path.display()))?;
        self.line_number += 1;
        if read == 0 {
            return Ok(None);
        }
        anyhow::ensure!(
            line.last() == Some(&b'\n'),
            "{} line {}: the line is cut short or too long (is the file complete?)",
            self.path.display(),
            self.line_number
        );
        line.pop();
        Ok(Some(line))
    }

    /// Up to `max` events; empty once the end line has been read and checked.
    pub fn next_page(&mut self, max: usize) -> anyhow::Result<Vec<RawEvent>> {
        let mut page = Vec::new();
        while page.len() < max && self.end.is_none() {
            let Some(line) = self.line()? else {
                anyhow::bail!(
                    "{} ends after position {} without its end line: the file is incomplete",
                    self.path.display(),
                    self.chain.position
                );
            };
            let at = |why: &str| {
                anyhow::anyhow!("{} line {}: {why}", self.path.display(), self.line_number)
            };
            if let Ok(EndLine { end }) = serde_json::from_slice::<EndLine>(&line) {
                if end.events != self.chain.position || end.last != self.chain.position {
                    return Err(at(&format!(
                        "the end line counts {} events up to {}, but the file holds {}",
                        end.events, end.last, self.chain.position
                    )));
                }
                if end.chain != self.chain.link {
                    return Err(at(
                        "the events do not hash to the chain link of the end line (the file was changed or damaged)",
                    ));
                }
                anyhow::ensure!(
                    self.line()?.is_none(),
                    "{}: lines follow the end line",
                    self.path.display()
                );
                self.end = Some(end);
                break;
            }
            let parsed: Line = serde_json::from_slice(&line)
                .map_err(|e| at(&format!("not an event line: {e}")))?;
            if parsed.position != self.chain.position + 1 {
                return Err(at(&format!(
                    "position {} follows {}: events must run from 1 without a gap",
                    parsed.position, self.chain.position
                )));
            }
            let bytes = URL_SAFE_NO_PAD
                .decode(&parsed.bytes)
                .map_err(|_| at("its bytes are not base64url"))?;
            self.chain.push(parsed.position, &parsed.subject, &bytes);
            page.push(RawEvent {
                position: parsed.position,
                subject: parsed.subject,
                bytes: bytes.into(),
                msg_id: parsed.msg_id,
            });
        }
        Ok(page)
    }
}

/// SHA-256 of a file, hex: what a backup's manifest records of each of its files.
pub fn sha256_of(path: &Path) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(position: Position, text: &str) -> RawEvent {
        RawEvent {
            position,
            subject: format!("idstream.events._.user.u{position}"),
            bytes: format!("{{\"n\":\"{text}\"}}").into_bytes().into(),
            msg_id: position.is_multiple_of(2).then(|| format!("k{position}:0")),
        }
    }

    fn header() -> Header {
        Header {
            format: FORMAT.into(),
            version: VERSION,
            log_id: "log".into(),
            backend: "embedded".into(),
            exported_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn written(events: &[RawEvent]) -> (tempfile::TempDir, PathBuf, End) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let mut writer = Writer::create(&path, &header()).unwrap();
        for e in events {
            writer.write(e).unwrap();
        }
        let end = writer.finish().unwrap();
        (dir, path, end)
    }

    #[test]
    fn a_written_file_reads_back_exactly_and_checks() {
        let events: Vec<RawEvent> = (1..=5).map(|p| event(p, "x")).collect();
        let (_dir, path, end) = written(&events);
        assert_eq!((end.events, end.last), (5, 5));
        let mut reader = Reader::open(&path).unwrap();
        assert_eq!(reader.header, header());
        let mut read = Vec::new();
        loop {
            let page = reader.next_page(2).unwrap();
            if page.is_empty() {
                break;
            }
            read.extend(page);
        }
        assert_eq!(read, events);
        assert_eq!(reader.end, Some(end));
        assert_eq!(Reader::check(&path).unwrap().1, end);
        assert!(
            Writer::create(&path, &header()).is_err(),
            "never overwrites"
        );
    }

    #[test]
    fn a_changed_cut_or_reordered_file_is_refused_with_the_reason() {
        let events: Vec<RawEvent> = (1..=4).map(|p| event(p, "x")).collect();
        let (_dir, path, _) = written(&events);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let variants: Vec<(String, &str)> = vec![
            (lines[..4].join("\n") + "\n", "without its end line"),
            (
                [lines[0], lines[2], lines[1], lines[3], lines[4], lines[5]].join("\n") + "\n",
                "without a gap",
            ),
            (
                text.replacen(
                    &URL_SAFE_NO_PAD.encode(b"{\"n\":\"x\"}"),
                    &URL_SAFE_NO_PAD.encode(b"{\"n\":\"y\"}"),
                    1,
                ),
                "do not hash",
            ),
            (text[..text.len() - 3].to_owned(), "cut short"),
            ("garbage\n".to_owned(), "not an idstream log file"),
            (String::new(), "empty"),
        ];
        for (content, why) in variants {
            std::fs::write(&path, &content).unwrap();
            let error = format!("{:#}", Reader::check(&path).unwrap_err());
            assert!(error.contains(why), "{why:?} not in {error:?}");
        }
    }
}
