//! Resource name rules, as Azure's (CONTRACT §1): each kind says which characters and lengths it takes.
//!
//! Names compare case-insensitively everywhere (`key`), and keep the casing they were created with.

/// The kinds of names galleon checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    ResourceGroup,
    Gallery,
    ImageDefinition,
    /// Scale sets, load balancers, managed images and the children of a load balancer.
    Resource,
}

impl NameKind {
    fn noun(self) -> &'static str {
        match self {
            NameKind::ResourceGroup => "resource group",
            NameKind::Gallery => "gallery",
            NameKind::ImageDefinition => "image definition",
            NameKind::Resource => "resource",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{name}' is not a valid {noun} name: {rule}")]
pub struct NameError {
    pub name: String,
    pub noun: &'static str,
    pub rule: &'static str,
}

/// Checks `name` against the rules of its kind.
pub fn validate(kind: NameKind, name: &str) -> Result<(), NameError> {
    let fail = |rule| Err(NameError { name: name.to_string(), noun: kind.noun(), rule });
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let (max, rule): (usize, &'static str) = match kind {
        NameKind::ResourceGroup => (90, "use 1-90 letters, digits, '_', '(', ')', '-' or '.', not ending in '.'"),
        NameKind::Gallery => (80, "use 1-80 letters, digits, '_' or '.', not starting or ending with '.'"),
        NameKind::ImageDefinition => {
            (80, "use 1-80 letters, digits, '_', '-' or '.', starting and ending with a letter or digit")
        }
        NameKind::Resource => (64, "use 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit"),
    };
    let (Some(first), Some(last)) = (name.chars().next(), name.chars().last()) else { return fail(rule) };
    if name.len() > max {
        return fail(rule);
    }
    let ok = match kind {
        NameKind::ResourceGroup => name.chars().all(|c| alnum(c) || "_()-.".contains(c)) && last != '.',
        NameKind::Gallery => name.chars().all(|c| alnum(c) || "_.".contains(c)) && first != '.' && last != '.',
        NameKind::ImageDefinition => name.chars().all(|c| alnum(c) || "_-.".contains(c)) && alnum(first) && alnum(last),
        NameKind::Resource => name.chars().all(|c| alnum(c) || "_-.".contains(c)) && alnum(first),
    };
    if ok { Ok(()) } else { fail(rule) }
}

/// The case-insensitive identity of a name.
pub fn key(name: &str) -> String {
    name.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_rules() {
        use NameKind::*;
        for (kind, good, bad) in [
            (ResourceGroup, vec!["rg", "my_rg(1)-x.y", "R"], vec!["", "rg.", "a b", "x/y", &"a".repeat(91)]),
            (Gallery, vec!["g", "my_gallery.1"], vec![".g", "g.", "my-gallery", ""]),
            (ImageDefinition, vec!["web", "web-app.v_2"], vec!["-web", "web-", "web app", ""]),
            (Resource, vec!["web", "webLB", "w.e_b-1"], vec!["-web", "_web", "we b", "", &"a".repeat(65)]),
        ] {
            for g in good {
                assert!(validate(kind, g).is_ok(), "{kind:?} refused {g}");
            }
            for b in bad {
                assert!(validate(kind, b).is_err(), "{kind:?} accepted {b}");
            }
        }
    }

    #[test]
    fn the_error_names_the_input_and_the_rule() {
        let e = validate(NameKind::Gallery, "my-gallery").unwrap_err();
        assert_eq!(
            e.to_string(),
            "'my-gallery' is not a valid gallery name: use 1-80 letters, digits, '_' or '.', not starting or ending with '.'"
        );
    }
}
