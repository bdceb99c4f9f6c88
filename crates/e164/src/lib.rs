//! E.164 numbers, Kazoo's number conversions and classifiers, and Kazoo-compatible regexes.
//!
//! Shared by `stepswitch` (carrier routing) and `numbers` (number management), so both see the
//! same normalisation and classification that Kazoo's `knm_converters` gives.
//!
//! # Brief overview
//!
//! - [`E164`]: a `+`-prefixed digit string, checked once in its constructor.
//! - [`Converters`]: `system_config/number_manager` compiled — `normalize`, `to_e164`,
//!   `is_reconcilable`, `classify`, `to_npan`, `to_1npan` (`knm_converters` (classifiers and E.164 conversion)).
//! - [`Pattern`]: a PCRE rule as Kazoo evaluates it (ASCII `\d`, unanchored, Erlang capture
//!   list), compiled with `regex` or, for lookaround/backreferences, `fancy-regex`.
//! - [`Diagnostic`]: a config entry that was left out, and why (partial success is a value).
//!
//! This crate does no I/O: callers hand it the config document they read.
//!
//! ```
//! use e164::Converters;
//! use serde_json::json;
//!
//! let (conv, diagnostics) = Converters::from_config(&json!({"default": {}}));
//! assert!(diagnostics.is_empty());
//! assert_eq!(conv.normalize("4158867900"), "+14158867900");
//! assert_eq!(conv.classify("+18005550100").unwrap().name, "tollfree_us");
//! ```
#![deny(missing_docs)]

mod converters;
mod pattern;

use std::fmt;
use std::str::FromStr;

pub use converters::{
    pretty_print, to_db, Classification, Classifier, Converter, Converters, DEFAULT_CLASSIFIERS,
    DEFAULT_E164_CONVERTERS, DEFAULT_RECONCILE_REGEX, NUMBER_MANAGER_DOC_ID,
};
pub use pattern::{
    check_bounds, translate, BudgetExceeded, CaptureList, Engine, Pattern, BACKTRACK_LIMIT,
    MAX_PATTERN_BYTES, MAX_PATTERN_NESTING,
};

/// Errors of this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A regex neither engine accepts.
    #[error("invalid regex {pattern:?}: {message}")]
    Regex {
        /// The pattern as written.
        pattern: String,
        /// The engine's explanation.
        message: String,
    },
    /// A regex only the backtracking engine runs, whose shape makes it catastrophic for that
    /// engine (see [`Pattern::new`]): quarantined, never evaluated.
    #[error("quarantined regex {pattern:?}: {reason}")]
    Catastrophic {
        /// The pattern as written.
        pattern: String,
        /// Why it is catastrophic.
        reason: String,
    },
    /// A string that is not `+` followed by 1 to 15 ASCII digits.
    #[error("not an E.164 number: {input:?}")]
    NotE164 {
        /// The rejected input.
        input: String,
    },
}

/// A config or document entry that was left out, and why.
///
/// Partial success is a value: whoever builds something from documents returns it together
/// with the list of these.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Diagnostic {
    /// The document (`number_manager`, a resource `_id`, ...).
    pub doc_id: String,
    /// The field path inside it, e.g. `classifiers.did_us.regex` or `rules`.
    pub field: String,
    /// The position inside the field's list or object, when there is one.
    pub index: Option<usize>,
    /// What was wrong and what was done about it.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.doc_id, self.field)?;
        if let Some(index) = self.index {
            write!(f, "[{index}]")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// An E.164 number: `+` followed by 1 to 15 ASCII digits (the ITU-T maximum).
///
/// Obtain one from a dialled string with [`Converters::to_e164`], or check a stored one with
/// [`E164::new`]. Serialises as the plain string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct E164(String);

impl E164 {
    /// The longest number E.164 allows, in digits.
    pub const MAX_DIGITS: usize = 15;

    /// Checks `number` and wraps it.
    ///
    /// # Errors
    ///
    /// [`Error::NotE164`] unless `number` is `+` followed by 1 to [`E164::MAX_DIGITS`] digits.
    pub fn new(number: impl Into<String>) -> Result<E164, Error> {
        let number = number.into();
        let valid = match number.strip_prefix('+') {
            Some(digits) => {
                !digits.is_empty()
                    && digits.len() <= E164::MAX_DIGITS
                    && digits.bytes().all(|byte| byte.is_ascii_digit())
            }
            None => false,
        };
        if valid {
            Ok(E164(number))
        } else {
            Err(Error::NotE164 { input: number })
        }
    }

    /// The number with its `+`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits without the `+`.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }

    /// Unwraps the string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for E164 {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for E164 {
    type Err = Error;

    fn from_str(number: &str) -> Result<E164, Error> {
        E164::new(number)
    }
}

impl TryFrom<String> for E164 {
    type Error = Error;

    fn try_from(number: String) -> Result<E164, Error> {
        E164::new(number)
    }
}

impl From<E164> for String {
    fn from(number: E164) -> String {
        number.0
    }
}

impl serde::Serialize for E164 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for E164 {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<E164, D::Error> {
        let number = String::deserialize(deserializer)?;
        E164::new(number).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_constructor_checks() {
        for good in ["+1", "+14158867900", "+123456789012345"] {
            assert_eq!(E164::new(good).unwrap().as_str(), good);
        }
        for bad in ["", "+", "14158867900", "+1415a", "+1234567890123456", " +1415"] {
            assert_eq!(E164::new(bad), Err(Error::NotE164 { input: bad.to_owned() }), "{bad}");
        }
        assert_eq!(E164::new("+14158867900").unwrap().digits(), "14158867900");
    }

    #[test]
    fn e164_serde_round_trip_checks() {
        let number: E164 = serde_json::from_str("\"+14158867900\"").unwrap();
        assert_eq!(serde_json::to_string(&number).unwrap(), "\"+14158867900\"");
        assert!(serde_json::from_str::<E164>("\"4158867900\"").is_err());
    }

    #[test]
    fn diagnostic_display_names_doc_field_and_index() {
        let diagnostic = Diagnostic {
            doc_id: "res1".into(),
            field: "rules".into(),
            index: Some(2),
            message: "invalid regex".into(),
        };
        assert_eq!(diagnostic.to_string(), "res1: rules[2]: invalid regex");
    }
}
