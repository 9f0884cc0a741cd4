//! Gallery rules: which version *latest* means.
//!
//! *Latest* is the highest version that is neither excluded from latest nor revoked (SPEC "Gallery
//! semantics"), and, for one scale set, not a version that faulted there (CONTRACT §6): `avoid`.

use crate::version::Version;

/// What the rule needs to know of one version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub version: Version,
    pub exclude_from_latest: bool,
    pub revoked: bool,
}

/// The version *latest* resolves to, if any is eligible.
pub fn latest(candidates: &[Candidate], avoid: &[Version]) -> Option<Version> {
    candidates
        .iter()
        .filter(|c| !c.exclude_from_latest && !c.revoked && !avoid.contains(&c.version))
        .map(|c| c.version)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(v: &str, exclude: bool, revoked: bool) -> Candidate {
        Candidate { version: v.parse().unwrap(), exclude_from_latest: exclude, revoked }
    }

    #[test]
    fn latest_skips_excluded_revoked_and_avoided() {
        let vs = [c("1.0.0", false, false), c("1.1.0", false, false), c("2.0.0", true, false), c("1.2.0", false, true)];
        assert_eq!(latest(&vs, &[]), Some("1.1.0".parse().unwrap()));
        assert_eq!(latest(&vs, &["1.1.0".parse().unwrap()]), Some("1.0.0".parse().unwrap()));
        assert_eq!(latest(&[c("3.0.0", true, false)], &[]), None);
        // Numeric, not lexical: 1.10.0 beats 1.9.0.
        assert_eq!(
            latest(&[c("1.9.0", false, false), c("1.10.0", false, false)], &[]),
            Some("1.10.0".parse().unwrap())
        );
    }
}
