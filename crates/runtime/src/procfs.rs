//! Process liveness from `/proc`: is this pid still *our* process, which processes belong to an instance.
//!
//! A pid alone proves nothing (pids are reused, `pid_max` can be as low as 32768), so a process is named
//! by pid **and** start time (field 22 of `/proc/PID/stat`, clock ticks since boot). A zombie (`Z`) or
//! dead (`X`) process counts as gone: on some machines PID 1 never reaps orphans, so zombies can stay
//! forever. This module only reads; it never signals.

use std::fs;
use std::path::Path;

/// The fields of `/proc/PID/stat` the runtime needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// `R`, `S`, `D`, `Z`, `T`, …
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    /// Clock ticks after boot.
    pub start_time: u64,
}

impl Stat {
    /// Exited but not reaped (or being torn down): no longer runs anything.
    pub fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses the text of `/proc/PID/stat`. The command name (field 2) may hold spaces and parentheses, so
/// fields are counted from after the *last* `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3 (state), so field N is `fields[N - 3]`.
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// The stat of `pid`, or `None` when there is no such process (or it cannot be read).
pub fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The start time of `pid`, zombies included (a zombie still holds its pid).
pub fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|s| s.start_time)
}

/// True when `pid` is the process that started at `start_time` and has not exited.
pub fn is_alive(pid: u32, start_time: u64) -> bool {
    stat(pid).is_some_and(|s| s.start_time == start_time && !s.is_dead())
}

/// Whether process group `pgid`, led by a process that started at `leader_start`, may still be ours to
/// signal. A live or zombie leader with another start time means the number was reused, so our group is
/// gone. No leader at all: members (if any) still hold the number, so they are ours — unless the group
/// emptied and the number was reused by a new group whose leader also died since, which would need a
/// whole pid wrap-around within one stop; accepted.
pub fn group_is_ours(pgid: u32, leader_start: u64) -> bool {
    match stat(pgid) {
        Some(s) => s.start_time == leader_start,
        None => true,
    }
}

/// Live processes (not us) that are in one of `groups`, or whose environment holds the exact entry
/// `marker` (`KEY=value`): an instance's processes, including those that left its process group.
pub fn instance_processes(groups: &[u32], marker: Option<&[u8]>) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Some(st) = stat(pid) else { continue };
        if st.is_dead() {
            continue;
        }
        let in_group = groups.iter().any(|&g| i64::from(st.pgrp) == i64::from(g));
        if in_group || marker.is_some_and(|m| environ_has(pid, m)) {
            found.push(pid);
        }
    }
    found.sort_unstable();
    found
}

/// Live members of process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    instance_processes(&[pgid], None)
}

/// Whether the environment of `pid` holds exactly the entry `entry` (`KEY=value`). Unreadable (another
/// user's process, a race with its exit) counts as no.
pub fn environ_has(pid: u32, entry: &[u8]) -> bool {
    let path = format!("/proc/{pid}/environ");
    fs::read(Path::new(&path)).is_ok_and(|env| env.split(|&b| b == 0).any(|e| e == entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_command_name_with_spaces_and_parens() {
        let text = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 \
                    18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let st = parse_stat(text).expect("parses");
        assert_eq!(st, Stat { state: 'S', ppid: 1, pgrp: 4242, session: 4242, start_time: 987654 });
    }

    #[test]
    fn rejects_truncated_stat() {
        assert_eq!(parse_stat("12 (x) S 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn our_own_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = std::process::id();
        let st = stat(me).expect("own stat");
        assert!(is_alive(me, st.start_time));
        assert!(!is_alive(me, st.start_time + 1));
    }

    #[test]
    fn a_zombie_is_dead() {
        let mut child = std::process::Command::new("/bin/true").spawn().expect("spawn");
        let pid = child.id();
        let start = start_time(pid).expect("start time while unreaped");
        // Not reaped yet, so it stays a zombie holding its pid: exactly what a non-reaping PID 1 leaves.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while stat(pid).is_some_and(|s| !s.is_dead()) {
            assert!(std::time::Instant::now() < deadline, "child never exited");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(stat(pid).map(|s| s.state), Some('Z'));
        assert!(!is_alive(pid, start));
        child.wait().expect("reap");
    }
}
