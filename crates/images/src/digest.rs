//! `Digest`, the name of everything in the store (`sha256:<64 lowercase hex>`), and the hashing copy that
//! names file contents while they stream to disk. It does not know where blobs or manifests live.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

const PREFIX: &str = "sha256:";

/// A sha256 content address. Parsing accepts only the canonical form, so two spellings of one digest
/// cannot name two different files in the store.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a digest: expected 'sha256:' and 64 lowercase hex digits")]
pub struct DigestError(String);

impl Digest {
    /// The digest of a byte string held in memory (manifests).
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// The 64 hex digits without the algorithm prefix, as used in file names.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses the bare hex form used in file names.
    pub fn from_hex(hex: &str) -> Result<Digest, DigestError> {
        let is_canonical = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let mut bytes = [0u8; 32];
        match is_canonical && hex::decode_to_slice(hex, &mut bytes).is_ok() {
            true => Ok(Digest(bytes)),
            false => Err(DigestError(hex.to_string())),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Digest, DigestError> {
        let hex = s.strip_prefix(PREFIX).ok_or_else(|| DigestError(s.to_string()))?;
        Digest::from_hex(hex).map_err(|_| DigestError(s.to_string()))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a hashing copy failed: reading the source is the caller's problem to name (an archive entry, a
/// file in a directory), writing is the store's.
#[derive(Debug)]
pub(crate) enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `from` into `to` while hashing, returning the digest and length of what was copied.
pub(crate) fn copy_hashing(from: &mut dyn Read, to: &mut dyn Write) -> Result<(Digest, u64), CopyError> {
    // Larger than io::copy's 8 KiB: images are mostly a few big files, and fewer syscalls matter there.
    let mut buf = vec![0u8; 128 * 1024];
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n]).map_err(CopyError::Write)?;
        len += n as u64;
    }
    Ok((Digest(hasher.finalize().into()), len))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let d = Digest::of(b"hello");
        let s = d.to_string();
        assert_eq!(s, "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(s.parse::<Digest>().unwrap(), d);
        assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{s}\""));
        assert_eq!(serde_json::from_str::<Digest>(&format!("\"{s}\"")).unwrap(), d);
    }

    #[test]
    fn only_the_canonical_form_parses() {
        let hex = Digest::of(b"x").hex();
        for bad in [
            hex.clone(),
            format!("sha256:{}", hex.to_uppercase()),
            format!("sha512:{hex}"),
            format!("sha256:{}", &hex[1..]),
            format!("sha256:{hex}0"),
            format!("sha256:{}g", &hex[1..]),
            "sha256:".to_string(),
            String::new(),
        ] {
            let err = bad.parse::<Digest>().unwrap_err();
            assert!(err.to_string().contains("is not a digest"), "{bad}: {err}");
        }
        assert!(serde_json::from_str::<Digest>("\"sha256:00\"").is_err());
    }

    #[test]
    fn copy_hashing_names_what_it_copies() {
        let data = vec![7u8; 300 * 1024];
        let mut out = Vec::new();
        let (digest, len) = copy_hashing(&mut data.as_slice(), &mut out).unwrap();
        assert_eq!((digest, len), (Digest::of(&data), data.len() as u64));
        assert_eq!(out, data);
    }
}
