//! Finding and signalling the processes of a home, the way the acceptance checks do: by environment,
//! command line, or working directory under the home.

use std::path::Path;

pub const TERM: i32 = 15;
pub const KILL: i32 = 9;

pub fn signal(pid: i32, sig: i32) {
    let _ = std::process::Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

/// Whether a process is alive (not gone, not a zombie).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

/// The pids of live processes whose environment or command line mention `home`, or whose working
/// directory is under it (this test process excluded).
pub fn of_home(home: &Path) -> Vec<i32> {
    let needle = home.to_string_lossy().into_owned();
    let me = std::process::id() as i32;
    let mut out = vec![];
    let Ok(entries) = std::fs::read_dir("/proc") else { return out };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        if pid == me || !alive(pid) {
            continue;
        }
        let mentions = |file: &str| {
            std::fs::read(format!("/proc/{pid}/{file}"))
                .map(|b| String::from_utf8_lossy(&b).contains(&needle))
                .unwrap_or(false)
        };
        let cwd_under = std::fs::read_link(format!("/proc/{pid}/cwd")).map(|c| c.starts_with(home)).unwrap_or(false);
        if mentions("environ") || mentions("cmdline") || cwd_under {
            out.push(pid);
        }
    }
    out
}

/// SIGKILL to every process of `home` (see [`of_home`]), a few rounds, so that one a dying supervisor
/// had just restarted goes too.
pub fn kill_all_of(home: &Path) {
    for _ in 0..3 {
        let pids = of_home(home);
        if pids.is_empty() {
            break;
        }
        for p in pids {
            signal(p, KILL);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Environment variables of a process.
pub fn environ(pid: i32) -> Vec<(String, String)> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter_map(|kv| {
                    let s = String::from_utf8_lossy(kv);
                    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Pids of instance roots: processes with `GALLEON_INSTANCE_ID` whose parent has none.
pub fn instance_roots(home: &Path) -> Vec<(i32, String)> {
    let mut out = vec![];
    for pid in of_home(home) {
        let env = environ(pid);
        let Some((_, id)) = env.iter().find(|(k, _)| k == "GALLEON_INSTANCE_ID") else { continue };
        let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1).and_then(|p| p.parse::<i32>().ok()))
            })
            .unwrap_or(0);
        if !environ(ppid).iter().any(|(k, _)| k == "GALLEON_INSTANCE_ID") {
            out.push((pid, id.clone()));
        }
    }
    out
}
