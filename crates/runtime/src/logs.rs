//! Instance output files: opening them for appending, capping them by copy-truncate rotation, and
//! reading tails back. The files are handed to the instance's processes as their stdout/stderr (never a
//! pipe, which would break when the reader dies); because the writers hold them with `O_APPEND`, a
//! truncation by the agent simply makes their next write land at the new end.
//!
//! Copy-truncate loses what is written between the copy and the truncation (a few lines at most); the
//! alternative, renaming, would need every writer to reopen its file, which an arbitrary app never does.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use crate::layout::rotated;

/// Opens `path` for appending, creating it if needed.
pub(crate) fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).create(true).open(path)
}

/// When `path` is larger than `cap` bytes: copies it to `<path>.1` (replacing the previous one) and
/// truncates it. Returns whether it rotated. A missing file is not an error.
pub(crate) fn rotate_if_over(path: &Path, cap: u64) -> io::Result<bool> {
    let len = match fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if len <= cap {
        return Ok(false);
    }
    let old = rotated(path);
    let mut tmp_name = old.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    tmp_name.push(".tmp");
    let tmp = old.with_file_name(tmp_name);
    // Copy to a temporary name first, so `.1` is always a whole earlier part, never a half-copied one.
    fs::copy(path, &tmp)?;
    fs::rename(&tmp, &old)?;
    OpenOptions::new().write(true).open(path)?.set_len(0)?;
    Ok(true)
}

/// The last `max` bytes of `path` (all of it when shorter); empty when it does not exist.
pub(crate) fn tail_bytes(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len > max {
        file.seek(SeekFrom::Start(len - max))?;
    }
    let mut buf = Vec::new();
    file.take(max).read_to_end(&mut buf)?;
    Ok(buf)
}

/// `tail_bytes` as text (lossy: apps write whatever bytes they like, and a cut may split a character).
pub(crate) fn tail_text(path: &Path, max: u64) -> io::Result<String> {
    Ok(String::from_utf8_lossy(&tail_bytes(path, max)?).into_owned())
}

/// The last `n` lines of `text` (a trailing newline does not count as an empty last line).
pub(crate) fn last_lines(text: &str, n: usize) -> &str {
    if n == 0 {
        return "";
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut start = body.len();
    for _ in 0..n {
        match body[..start].rfind('\n') {
            Some(i) => start = i,
            None => return text,
        }
    }
    &text[start + 1..]
}

/// A log with its rotated part before it, or its last `tail_lines` lines across both.
pub(crate) fn read_log(current: &Path, tail_lines: Option<usize>) -> io::Result<String> {
    let read = |p: &Path| match fs::read(p) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    };
    let mut bytes = read(&rotated(current))?;
    bytes.extend(read(current)?);
    let text = String::from_utf8_lossy(&bytes);
    Ok(match tail_lines {
        Some(n) => last_lines(&text, n).to_string(),
        None => text.into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn last_lines_counts_from_the_end() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(last_lines("a\nb\nc", 2), "b\nc");
        assert_eq!(last_lines("a\nb\n", 5), "a\nb\n");
        assert_eq!(last_lines("a\nb\n", 0), "");
        assert_eq!(last_lines("", 3), "");
    }

    #[test]
    fn rotation_keeps_the_old_part_and_appending_writers_continue_at_the_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stdout.log");
        let mut writer = open_append(&path).expect("open");
        writer.write_all(&[b'x'; 99]).expect("write");
        writer.write_all(b"\n").expect("write");
        assert!(!rotate_if_over(&path, 100).expect("check"));
        writer.write_all(b"y\n").expect("write");
        assert!(rotate_if_over(&path, 100).expect("rotate"));
        assert_eq!(fs::metadata(rotated(&path)).expect("meta").len(), 102);
        assert_eq!(fs::metadata(&path).expect("meta").len(), 0);
        writer.write_all(b"after\n").expect("write");
        assert_eq!(fs::read_to_string(&path).expect("read"), "after\n");
        assert!(read_log(&path, None).expect("read").ends_with("y\nafter\n"));
        assert_eq!(read_log(&path, Some(1)).expect("read"), "after\n");
    }

    #[test]
    fn tail_bytes_reads_only_the_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        fs::write(&path, "0123456789").expect("write");
        assert_eq!(tail_bytes(&path, 4).expect("tail"), b"6789");
        assert_eq!(tail_bytes(&path, 40).expect("tail"), b"0123456789");
        assert!(tail_bytes(&dir.path().join("missing"), 4).expect("tail").is_empty());
    }
}
