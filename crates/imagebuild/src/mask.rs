//! Masking of sensitive variable values (Packer's `sensitive-variables`, CONTRACT §10) in any text a
//! build shows: streamed lines, step failures, resolve errors.
//!
//! Owns the replacement rule only; callers decide what text passes through it.

/// What a masked value is replaced with, as Packer prints it.
pub const MASK: &str = "<sensitive>";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Masker {
    /// Longest first, so a secret that contains another is masked whole.
    needles: Vec<String>,
}

impl Masker {
    pub(crate) fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Masker {
        let mut needles: Vec<String> = Vec::new();
        for v in values {
            // A multi-line secret never reaches a line-based sink whole, so each of its lines is a needle too.
            let parts = std::iter::once(v).chain(if v.contains('\n') { v.lines().collect() } else { Vec::new() });
            for part in parts {
                let part = part.trim_end_matches('\r');
                if !part.is_empty() && !needles.iter().any(|n| n == part) {
                    needles.push(part.to_string());
                }
            }
        }
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        Masker { needles }
    }

    pub(crate) fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for n in &self.needles {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), MASK);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_longest_first_and_each_line_of_multiline_values() {
        let m = Masker::new(["abc", "abcdef", "", "line1\nline2"]);
        assert_eq!(m.mask("x abcdef y abc z"), "x <sensitive> y <sensitive> z");
        assert_eq!(m.mask("got line2 here"), "got <sensitive> here");
        assert_eq!(m.mask("nothing"), "nothing");
    }
}
