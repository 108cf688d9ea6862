//! `GET /containers/{id}/logs`: a sandbox's log (its detached commands' output, which
//! `netd shim` writes as Docker's `json-file` driver does) served as Docker serves a container's
//! without a TTY: each line a frame of `[stream, 0, 0, 0, length (u32, big-endian)]` and its
//! bytes (stream 1 stdout, 2 stderr), which the docker CLI splits back (`stdcopy`).

use std::{collections::HashMap, io::Read as _, path::Path};

use bytes::Bytes;

use crate::{api::types::LogEntry, daemon::events::parse_timestamp, model::ids};

/// What `docker logs` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[expect(clippy::struct_excessive_bools, reason = "Docker's query flags, one each")]
pub struct LogQuery {
    pub stdout: bool,
    pub stderr: bool,
    pub follow: bool,
    /// Only the last N lines (of those that pass).
    pub tail: Option<usize>,
    pub timestamps: bool,
    /// Lines read at or after (`since`), at or before (`until`), in ns since the epoch.
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl LogQuery {
    /// Reads the query as dockerd does; `flag` reads a boolean.
    pub fn parse(q: &HashMap<String, String>, flag: impl Fn(&str) -> bool) -> Result<Self, String> {
        let (stdout, stderr) = (flag("stdout"), flag("stderr"));
        if !stdout && !stderr {
            return Err("Bad parameters: you must choose at least one stream".into());
        }
        let time =
            |key: &str| q.get(key).filter(|v| !v.is_empty() && *v != "0").map(|v| parse_timestamp(v)).transpose();
        Ok(Self {
            stdout,
            stderr,
            follow: flag("follow"),
            // As dockerd: `all`, or anything that is not a count, means every line.
            tail: q.get("tail").and_then(|t| t.parse().ok()),
            timestamps: flag("timestamps"),
            since: time("since")?,
            until: time("until")?,
        })
    }

    /// Whether `e` is asked for (its stream and time).
    fn wants(&self, e: &LogEntry) -> bool {
        let stream = match e.stream.as_str() {
            "stdout" => self.stdout,
            "stderr" => self.stderr,
            _ => false,
        };
        let at = unix_nanos(&e.time).unwrap_or(0);
        stream && self.since.is_none_or(|s| at >= s) && self.until.is_none_or(|u| at <= u)
    }
}

/// Nanoseconds since the epoch of an RFC 3339 time as the log writes it.
fn unix_nanos(time: &str) -> Option<i64> {
    let secs = ids::unix_secs(time)?;
    let frac = time.strip_suffix('Z')?.split_once('.').map_or("", |(_, f)| f);
    let nanos: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<9}").get(..9)?.parse().ok()? };
    Some(secs * 1_000_000_000 + nanos)
}

/// The entries of the log text `text` (complete lines; a line that does not parse is skipped).
fn entries(text: &str) -> impl Iterator<Item = LogEntry> + '_ {
    text.split_inclusive('\n').filter(|l| l.ends_with('\n')).filter_map(|l| serde_json::from_str(l).ok())
}

/// The frame of entry `e`.
fn frame(e: &LogEntry, timestamps: bool) -> Vec<u8> {
    let payload = if timestamps { format!("{} {}", e.time, e.log) } else { e.log.clone() };
    let kind = if e.stream == "stderr" { 2 } else { 1 };
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&[kind, 0, 0, 0]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload.as_bytes());
    out
}

/// Reads the log at `path` from byte `offset`: the frames of the complete lines there that `q`
/// asks for (the last `q.tail` of them with `tail`), and the offset after them.
pub fn read_from(path: &Path, offset: u64, q: &LogQuery, tail: bool) -> (Bytes, u64) {
    let mut text = String::new();
    let read = std::fs::File::open(path).and_then(|mut f| {
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(offset))?;
        f.read_to_string(&mut text)
    });
    if read.is_err() {
        return (Bytes::new(), offset);
    }
    // Up to the last complete line: a line being written is read next time.
    let complete = text.rfind('\n').map_or(0, |i| i + 1);
    let wanted: Vec<LogEntry> = entries(&text[..complete]).filter(|e| q.wants(e)).collect();
    let skip = match q.tail {
        Some(n) if tail => wanted.len().saturating_sub(n),
        _ => 0,
    };
    let frames: Vec<u8> = wanted[skip..].iter().flat_map(|e| frame(e, q.timestamps)).collect();
    (Bytes::from(frames), offset + complete as u64)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::{read_from, unix_nanos, LogQuery};

    #[test]
    fn log_lines_come_back_as_docker_frames_filtered_as_asked() {
        let dir = std::env::temp_dir().join(format!("netd-logs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("x-json.log");
        let text = concat!(
            r#"{"log":"one\n","stream":"stdout","time":"2026-12-02T10:00:00.100000000Z"}"#,
            "\n",
            r#"{"log":"oops\n","stream":"stderr","time":"2026-12-02T10:00:01.000000000Z"}"#,
            "\n",
            r#"{"log":"two\n","stream":"stdout","time":"2026-12-02T10:00:02.5Z"}"#,
            "\n",
            r#"{"log":"half"#,
        );
        std::fs::write(&path, text).expect("write");
        let q = |pairs: &[(&str, &str)]| {
            let m: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
            LogQuery::parse(&m, |k| m.get(k).is_some_and(|v| v == "1")).expect("a query")
        };
        let all = q(&[("stdout", "1"), ("stderr", "1")]);
        let (frames, end) = read_from(&path, 0, &all, true);
        assert_eq!(&frames[..8], &[1, 0, 0, 0, 0, 0, 0, 4]);
        assert_eq!(&frames[8..12], b"one\n");
        assert_eq!(&frames[12..20], &[2, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!(frames.len(), 8 + 4 + 8 + 5 + 8 + 4, "the unfinished line waits");
        assert_eq!(end, (text.len() - r#"{"log":"half"#.len()) as u64);
        let (rest, _) = read_from(&path, end, &all, true);
        assert!(rest.is_empty());
        // One stream, the last line, with its time; since a time.
        let (frames, _) = read_from(&path, 0, &q(&[("stdout", "1"), ("tail", "1"), ("timestamps", "1")]), true);
        assert_eq!(&frames[8..], b"2026-12-02T10:00:02.5Z two\n");
        let since = (unix_nanos("2026-12-02T10:00:01Z").expect("time") / 1_000_000_000).to_string();
        let (frames, _) = read_from(&path, 0, &q(&[("stdout", "1"), ("since", &since)]), true);
        assert_eq!(&frames[8..], b"two\n");
        let none: HashMap<String, String> = HashMap::new();
        assert_eq!(
            LogQuery::parse(&none, |_| false).unwrap_err(),
            "Bad parameters: you must choose at least one stream"
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
