//! Rule patterns: a scanner rule id, exact (`CKV_AWS_20`) or as a prefix
//! (`CKV_DOCKER_*`).

use std::fmt;

/// Longest pattern accepted.
pub const MAX_RULE_PATTERN_CHARS: usize = 200;

/// An exact rule id, or a prefix followed by one trailing `*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RulePattern {
    /// The text before the `*`, or the whole id.
    stem: String,
    prefix: bool,
}

/// Why a pattern is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulePatternError {
    #[error("a rule pattern must not be empty")]
    Empty,
    #[error("a rule pattern is at most {MAX_RULE_PATTERN_CHARS} characters")]
    TooLong,
    #[error("`*` may appear only once, at the end, after at least one character")]
    MisplacedWildcard,
    #[error("a rule pattern must not contain control characters or whitespace")]
    InvalidCharacter,
}

impl RulePattern {
    /// Parses `id` or `prefix*`.
    pub fn parse(text: &str) -> Result<Self, RulePatternError> {
        if text.is_empty() {
            return Err(RulePatternError::Empty);
        }
        if text.chars().count() > MAX_RULE_PATTERN_CHARS {
            return Err(RulePatternError::TooLong);
        }
        if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(RulePatternError::InvalidCharacter);
        }
        let (stem, prefix) = match text.strip_suffix('*') {
            Some(stem) => (stem, true),
            None => (text, false),
        };
        if stem.is_empty() || stem.contains('*') {
            return Err(RulePatternError::MisplacedWildcard);
        }
        Ok(RulePattern {
            stem: stem.to_owned(),
            prefix,
        })
    }

    /// Whether `rule_id` matches (case-sensitive, as scanners' ids are).
    pub fn matches(&self, rule_id: &str) -> bool {
        if self.prefix {
            rule_id.starts_with(&self.stem)
        } else {
            rule_id == self.stem
        }
    }

    /// The pattern as a SQL `LIKE` pattern with `\` as the escape character:
    /// `_` and `%` in rule ids (checkov's `CKV_AWS_20`) are literal.
    pub fn to_sql_like(&self) -> String {
        let mut like = String::with_capacity(self.stem.len() + 4);
        for c in self.stem.chars() {
            if matches!(c, '\\' | '%' | '_') {
                like.push('\\');
            }
            like.push(c);
        }
        if self.prefix {
            like.push('%');
        }
        like
    }
}

impl fmt::Display for RulePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.stem)?;
        if self.prefix {
            f.write_str("*")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_prefix() {
        let exact = RulePattern::parse("CKV_AWS_20").unwrap();
        assert!(exact.matches("CKV_AWS_20"));
        assert!(!exact.matches("CKV_AWS_200"));
        let prefix = RulePattern::parse("CKV_DOCKER_*").unwrap();
        assert!(prefix.matches("CKV_DOCKER_2"));
        assert!(!prefix.matches("CKV_AWS_2"));
        assert_eq!(prefix.to_string(), "CKV_DOCKER_*");
    }

    #[test]
    fn like_escapes_wildcards_of_sql() {
        assert_eq!(
            RulePattern::parse("CKV_AWS_20").unwrap().to_sql_like(),
            r"CKV\_AWS\_20"
        );
        assert_eq!(
            RulePattern::parse(r"a%b\c*").unwrap().to_sql_like(),
            r"a\%b\\c%"
        );
    }

    #[test]
    fn refuses_malformed() {
        for (text, error) in [
            ("", RulePatternError::Empty),
            ("*", RulePatternError::MisplacedWildcard),
            ("a*b", RulePatternError::MisplacedWildcard),
            ("a**", RulePatternError::MisplacedWildcard),
            ("a b", RulePatternError::InvalidCharacter),
            ("a\0", RulePatternError::InvalidCharacter),
        ] {
            assert_eq!(RulePattern::parse(text), Err(error), "{text:?}");
        }
        assert_eq!(
            RulePattern::parse(&"x".repeat(201)),
            Err(RulePatternError::TooLong)
        );
    }
}
