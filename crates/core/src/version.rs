//! Gallery image versions: `MAJOR.MINOR.PATCH`, each a 32-bit non-negative integer (CONTRACT §1).
//!
//! Stricter than semver on purpose, as Azure is: no pre-release or build parts, no leading `+`, no
//! missing parts. Ordering is numeric, so `1.10.0` is newer than `1.9.0`.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{input}' is not a valid image version: {why} (expected MAJOR.MINOR.PATCH, e.g. 1.0.0)")]
pub struct VersionError {
    pub input: String,
    pub why: &'static str,
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Version, VersionError> {
        let err = |why| VersionError { input: s.to_string(), why };
        let parts: Vec<&str> = s.split('.').collect();
        if parts.len() != 3 {
            return Err(err("it must have exactly three parts"));
        }
        let mut nums = [0u32; 3];
        for (slot, part) in nums.iter_mut().zip(&parts) {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("each part must be a non-negative integer"));
            }
            *slot = part.parse().map_err(|_| err("each part must fit in 32 bits"))?;
        }
        Ok(Version { major: nums[0], minor: nums[1], patch: nums[2] })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders_numerically() {
        let v = |s: &str| s.parse::<Version>().unwrap();
        assert!(v("1.10.0") > v("1.9.0"));
        assert!(v("2.0.0") > v("1.99.99"));
        assert_eq!(v("0.0.0").to_string(), "0.0.0");
        assert_eq!(v("4294967295.0.1").major, u32::MAX);
    }

    #[test]
    fn refuses_what_azure_refuses() {
        for bad in
            ["1.0", "1", "1.0.0.0", "1.0.0-beta", "+1.0.0", "1.-1.0", "a.b.c", "1..0", "", "4294967296.0.0", " 1.0.0"]
        {
            assert!(bad.parse::<Version>().is_err(), "{bad} was accepted");
        }
    }
}
