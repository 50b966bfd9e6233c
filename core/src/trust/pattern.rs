//! Whether an identity or issuer regexp pins whole values. A pattern that is not anchored
//! at both ends also accepts any identity that merely contains a match, so a policy built
//! from it trusts more signers than it names.

use regex_syntax::hir::Look;

/// Whether every match of `pattern` must span the whole text: each top-level alternative
/// begins with start-of-text and ends with end-of-text. `^(a|b)$` and `^a$|^b$` are
/// anchored; `^a|b$` is not (it means `(^a)|(b$)`), nor is `(?m)^a$` (line anchors), nor an
/// invalid pattern.
///
/// The pattern is parsed with the syntax the `regex` crate uses, so the answer is about the
/// regexp the verifier compiles, not about its first and last characters.
pub fn is_anchored(pattern: &str) -> bool {
    let Ok(hir) = regex_syntax::Parser::new().parse(pattern) else {
        return false;
    };
    let p = hir.properties();
    p.look_set_prefix().contains(Look::Start) && p.look_set_suffix().contains(Look::End)
}

#[cfg(test)]
mod tests {
    use super::is_anchored;

    #[test]
    fn alternatives_must_each_be_anchored_at_both_ends() {
        for p in [
            r"^a$",
            r"^(a|b)$",
            r"^(?:a|b)$",
            r"^a$|^b$",
            r"\Aa\z",
            r"^https://git\.example\.org/acct/me-module@.*$",
            r"^(^a$)$",
        ] {
            assert!(is_anchored(p), "{p} is anchored");
        }
        for p in [
            r"^a|b$", r"^a$|b", r"a|^b$", r"a", r"^a", r"a$", r"(?m)^a$", r"^a\$", r"\^a$",
            r"^*a$", r"(^)?a$", r"[^a]$", r"^(", "",
        ] {
            assert!(!is_anchored(p), "{p} is not anchored");
        }
    }
}
