//! The home's block of loopback addresses (CONTRACT §3): instances and load-balancer frontends get
//! their own `127.x.y.z`, like VMs their private IPs, so every instance can listen on the same port.
//!
//! Each home owns a /20 inside 127.64.0.0/10, recorded in its database at first start so it never
//! changes. Blocks are claimed in a machine-wide registry (a small file under `flock`), starting from a
//! hash of the home's path; entries of homes that no longer exist are reclaimed, and a block with any
//! socket bound in it (`/proc/net/tcp`, `tcp6`) is skipped, so parallel test daemons never collide.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::fcntl::{Flock, FlockArg};

/// 127.64.0.0/10 holds 1024 blocks of 4096 addresses.
const BASE: u32 = u32::from_be_bytes([127, 64, 0, 0]);
const BLOCK_SIZE: u32 = 4096;
const BLOCKS: u32 = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block(pub u32);

impl Block {
    pub fn base(self) -> Ipv4Addr {
        Ipv4Addr::from(BASE + self.0 * BLOCK_SIZE)
    }
    /// The first address handed out (`.0` of the block is never used).
    pub fn first(self) -> Ipv4Addr {
        Ipv4Addr::from(BASE + self.0 * BLOCK_SIZE + 1)
    }
    /// The last address handed out (the block's broadcast-like last address is never used).
    pub fn last(self) -> Ipv4Addr {
        Ipv4Addr::from(BASE + self.0 * BLOCK_SIZE + BLOCK_SIZE - 2)
    }
    fn contains(self, a: Ipv4Addr) -> bool {
        let a = u32::from(a);
        (BASE + self.0 * BLOCK_SIZE..BASE + (self.0 + 1) * BLOCK_SIZE).contains(&a)
    }
}

/// The machine-wide registry of claimed blocks.
pub fn registry_path() -> PathBuf {
    std::env::var_os("GALLEON_ADDRESS_REGISTRY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/galleon-address-blocks"))
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

/// Claims (or re-claims) this home's block. `recorded` is the block the home's database already names.
pub fn claim(home: &Path, recorded: Option<u32>) -> anyhow::Result<Block> {
    claim_in(&registry_path(), home, recorded)
}

/// `claim`, with the registry file given.
pub fn claim_in(path: &Path, home: &Path, recorded: Option<u32>) -> anyhow::Result<Block> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open the address registry {}", path.display()))?;
    let mut file = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow::anyhow!("cannot lock the address registry: {e}"))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let home_s = home.to_string_lossy().into_owned();
    // Keep the entries of homes that still exist (and are not ours: ours is rewritten below).
    let mut entries: Vec<(u32, String)> = text
        .lines()
        .filter_map(|l| l.split_once(' ').and_then(|(b, h)| Some((b.parse::<u32>().ok()?, h.to_string()))))
        .filter(|(_, h)| h != &home_s && Path::new(h).join("galleon.db").exists())
        .collect();
    let taken = |b: u32, entries: &[(u32, String)]| entries.iter().any(|(e, _)| *e == b);
    let block = match recorded {
        // A recorded block is the home's for good; only a live claim by another home would be a conflict.
        Some(b) if b < BLOCKS && !taken(b, &entries) => b,
        Some(b) => anyhow::bail!(
            "this home's address block {} is claimed by another home in {}; was the home copied?",
            Block(b).base(),
            path.display()
        ),
        None => {
            let bound = bound_addresses();
            let start = fnv1a(home_s.as_bytes()) % BLOCKS;
            (0..BLOCKS)
                .map(|i| (start + i) % BLOCKS)
                .find(|b| !taken(*b, &entries) && !bound.iter().any(|a| Block(*b).contains(*a)))
                .context("every loopback address block in 127.64.0.0/10 is in use")?
        }
    };
    entries.push((block, home_s));
    entries.sort();
    let body: String = entries.iter().map(|(b, h)| format!("{b} {h}\n")).collect();
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(body.as_bytes())?;
    file.sync_data()?;
    Ok(Block(block))
}

/// Every IPv4 address a TCP socket is bound to on this machine (v4, and v4-mapped v6).
fn bound_addresses() -> Vec<Ipv4Addr> {
    let mut out = vec![];
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let Ok(text) = std::fs::read_to_string(file) else { continue };
        for line in text.lines().skip(1) {
            let Some(local) = line.split_whitespace().nth(1) else { continue };
            let Some((hex, _port)) = local.split_once(':') else { continue };
            let hex = if v6 {
                // ::ffff:a.b.c.d is 0000000000000000FFFF0000 followed by the address word.
                match hex.strip_prefix("0000000000000000FFFF0000") {
                    Some(h) => h,
                    None => continue,
                }
            } else {
                hex
            };
            if let Ok(word) = u32::from_str_radix(hex, 16) {
                // The kernel prints the address in host (little-endian) order.
                out.push(Ipv4Addr::from(word.to_le_bytes()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_slash_20s_inside_127_64_0_0_slash_10() {
        assert_eq!(Block(0).base(), Ipv4Addr::new(127, 64, 0, 0));
        assert_eq!(Block(1).first(), Ipv4Addr::new(127, 64, 16, 1));
        assert_eq!(Block(1023).last(), Ipv4Addr::new(127, 127, 255, 254));
        assert!(Block(1).contains(Ipv4Addr::new(127, 64, 31, 255)));
        assert!(!Block(1).contains(Ipv4Addr::new(127, 64, 32, 0)));
    }

    #[test]
    fn homes_get_distinct_blocks_and_keep_them() {
        let dir = tempfile::tempdir().unwrap();
        let reg = dir.path().join("registry");
        let homes: Vec<PathBuf> = (0..3).map(|i| dir.path().join(format!("h{i}"))).collect();
        for h in &homes {
            std::fs::create_dir_all(h).unwrap();
            std::fs::write(h.join("galleon.db"), b"").unwrap();
        }
        let a = claim_in(&reg, &homes[0], None).unwrap();
        let b = claim_in(&reg, &homes[1], None).unwrap();
        let c = claim_in(&reg, &homes[2], None).unwrap();
        assert!(a != b && b != c && a != c);
        assert_eq!(claim_in(&reg, &homes[0], Some(a.0)).unwrap(), a, "a recorded block stays the home's");
        assert!(claim_in(&reg, &homes[1], Some(a.0)).is_err(), "a block another live home holds is refused");
        // A home that is gone gives its block back.
        std::fs::remove_dir_all(&homes[2]).unwrap();
        let d = dir.path().join("h3");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("galleon.db"), b"").unwrap();
        assert!(claim_in(&reg, &d, Some(c.0)).is_ok());
    }
}
