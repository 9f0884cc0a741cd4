//! The CustomScript extension's pieces that are not process supervision: whether it must run, fetching
//! its `fileUris` (`file://` copies, `http(s)://` via a blocking HTTP client with a timeout), and turning
//! a finished run into a [`Provisioned`]. The agent spawns and reaps the command itself.
//!
//! Nothing here ever sees the command text, so nothing here can leak it. URIs are shown without their
//! query and fragment, where SAS tokens and other credentials live.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::Provisioned;
use crate::layout::InstanceDir;
use crate::logs::tail_text;
use crate::state::ScriptStatus;

/// How much of the command's stdout/stderr a result keeps.
pub(crate) const TAIL_BYTES: u64 = 4096;

/// The script runs when it never finished successfully on this OS disk with these settings: no status
/// (never ran, or the OS disk was remade, which removes it), a failure, or another fingerprint.
pub(crate) fn needs_run(status: Option<&ScriptStatus>, fingerprint: &str) -> bool {
    !status.is_some_and(|s| s.result.succeeded && s.fingerprint == fingerprint)
}

/// `uri` without query and fragment, for messages.
pub(crate) fn redact_uri(uri: &str) -> String {
    let end = uri.find(['?', '#']).unwrap_or(uri.len());
    uri[..end].to_string()
}

/// Downloads every URI into `dest` (emptied first), each under the last segment of its path, and makes
/// them executable. The error names the URI (redacted) and says why.
pub(crate) fn download_all(uris: &[String], dest: &Path, timeout: Duration) -> Result<(), String> {
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("{what} {}: {e}", dest.display());
    match fs::remove_dir_all(dest) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(fail("cannot empty", &e)),
        _ => {}
    }
    fs::create_dir_all(dest).map_err(|e| fail("cannot create", &e))?;
    let mut client = None;
    for uri in uris {
        download_one(uri, dest, timeout, &mut client)
            .map_err(|e| format!("failed to download {}: {e}", redact_uri(uri)))?;
    }
    Ok(())
}

fn download_one(
    uri: &str,
    dest: &Path,
    timeout: Duration,
    client: &mut Option<reqwest::blocking::Client>,
) -> Result<(), String> {
    let url = reqwest::Url::parse(uri).map_err(|e| format!("not a valid URI ({e})"))?;
    let segment = url.path_segments().and_then(|mut s| s.next_back()).unwrap_or_default();
    let name = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
    // One plain path component, so a URI can never write outside the download folder.
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err("the URI names no file".into());
    }
    let target = dest.join(&*name);
    let partial = dest.join(format!(".{name}.part"));
    match url.scheme() {
        "file" => {
            let source = url.to_file_path().map_err(|()| "not a local file path".to_string())?;
            fs::copy(&source, &partial).map_err(|e| e.to_string())?;
        }
        "http" | "https" => {
            if client.is_none() {
                let built = reqwest::blocking::Client::builder()
                    .timeout(timeout)
                    .build()
                    .map_err(|e| format!("cannot make an HTTP client: {}", e.without_url()))?;
                *client = Some(built);
            }
            let Some(http) = client.as_ref() else { return Err("no HTTP client".into()) };
            // `without_url`: reqwest's messages repeat the URL, query and all.
            let mut response = http
                .get(url.clone())
                .send()
                .and_then(|r| r.error_for_status())
                .map_err(|e| e.without_url().to_string())?;
            let mut file = fs::File::create(&partial).map_err(|e| e.to_string())?;
            response.copy_to(&mut file).map_err(|e| e.without_url().to_string())?;
        }
        other => return Err(format!("unsupported scheme {other:?} (use file, http or https)")),
    }
    // Only a whole download gets the real name.
    let finish = || -> io::Result<()> {
        fs::set_permissions(&partial, fs::Permissions::from_mode(0o755))?;
        fs::rename(&partial, &target)
    };
    finish().map_err(|e| {
        let _ = fs::remove_file(&partial);
        e.to_string()
    })
}

/// The result of a command that exited (or was killed), with the tails of its output files.
pub(crate) fn finished(dir: &InstanceDir, code: Option<i32>, signal: Option<i32>, at_ms: i64) -> Provisioned {
    let succeeded = code == Some(0);
    let message = match (code, signal) {
        (Some(0), _) => "Enable succeeded".to_string(),
        (Some(c), _) => format!("Enable failed: the command exited with status {c}"),
        (None, Some(s)) => format!("Enable failed: the command was killed by signal {s}"),
        (None, None) => "Enable failed: the command ended without a status".to_string(),
    };
    Provisioned {
        succeeded,
        exit_code: code,
        message,
        stdout_tail: tail_text(&dir.script_stdout(), TAIL_BYTES).unwrap_or_default(),
        stderr_tail: tail_text(&dir.script_stderr(), TAIL_BYTES).unwrap_or_default(),
        finished_at_ms: at_ms,
    }
}

/// The result of a run that never got to its command.
pub(crate) fn failed_before_command(message: String, at_ms: i64) -> Provisioned {
    Provisioned {
        succeeded: false,
        exit_code: None,
        message: format!("Enable failed: {message}"),
        stdout_tail: String::new(),
        stderr_tail: String::new(),
        finished_at_ms: at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(succeeded: bool, fingerprint: &str) -> ScriptStatus {
        let mut result = failed_before_command(String::new(), 0);
        result.succeeded = succeeded;
        ScriptStatus { fingerprint: fingerprint.into(), result }
    }

    #[test]
    fn runs_unless_it_succeeded_with_the_same_settings() {
        assert!(needs_run(None, "a"));
        assert!(needs_run(Some(&status(false, "a")), "a"));
        assert!(needs_run(Some(&status(true, "b")), "a"));
        assert!(!needs_run(Some(&status(true, "a")), "a"));
    }

    #[test]
    fn redaction_drops_query_and_fragment() {
        assert_eq!(redact_uri("https://h/x.sh?sig=SECRET#f"), "https://h/x.sh");
        assert_eq!(redact_uri("file:///a/b.sh"), "file:///a/b.sh");
    }

    #[test]
    fn file_uris_are_copied_and_made_executable() {
        let src = tempfile::tempdir().expect("tempdir");
        let file = src.path().join("setup.sh");
        fs::write(&file, "echo hi\n").expect("write");
        let dest = src.path().join("dl");
        download_all(&[format!("file://{}", file.display())], &dest, Duration::from_secs(5)).expect("download");
        let copied = dest.join("setup.sh");
        assert_eq!(fs::read_to_string(&copied).expect("read"), "echo hi\n");
        assert_eq!(fs::metadata(&copied).expect("meta").permissions().mode() & 0o777, 0o755);
    }

    #[test]
    fn a_missing_file_or_bad_scheme_names_the_uri() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("dl");
        let err = download_all(&["file:///no/such/file.sh".into()], &dest, Duration::from_secs(5)).expect_err("fails");
        assert!(err.contains("file:///no/such/file.sh"), "{err}");
        let err =
            download_all(&["ftp://h/x.sh?token=SECRET".into()], &dest, Duration::from_secs(5)).expect_err("fails");
        assert!(err.contains("ftp://h/x.sh") && !err.contains("SECRET"), "{err}");
    }
}
