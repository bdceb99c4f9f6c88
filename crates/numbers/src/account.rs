//! Account ids (Kazoo's `?MATCH_ACCOUNT_RAW`) and the database names derived from them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// A Kazoo account id: exactly 32 ASCII letters, digits or underscores.
///
/// Kazoo's guard `?MATCH_ACCOUNT_RAW` only checks for 32 bytes; production ids are lowercase hex,
/// and Kazoo's own fixtures use ids such as `account0000000000000000000000001` (master) and
/// `reseller_account_b113394f16cb76d` (4.3), so those characters are accepted; anything that would
/// break a database name (`/`, `%`, `+`, …) is not. The check is made once, here.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountId(String);

impl AccountId {
    /// Checks `raw` is an account id.
    ///
    /// # Errors
    /// [`Error::InvalidAccountId`] naming the refused value.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        if raw.len() == 32 && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Error::InvalidAccountId { value: raw.to_owned() })
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The account database, unencoded (`account/ac/co/unt0000000000000000000000001`), the form
    /// the store's database names take (`kz_util:format_account_db/1`).
    pub fn db_name(&self) -> String {
        format!("account/{}/{}/{}", &self.0[0..2], &self.0[2..4], &self.0[4..])
    }

    /// The account database, URL-encoded as Kazoo writes it in documents
    /// (`account%2Fac%2Fco%2Funt0000000000000000000000001`).
    pub fn encoded_db_name(&self) -> String {
        format!("account%2F{}%2F{}%2F{}", &self.0[0..2], &self.0[2..4], &self.0[4..])
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for AccountId {
    type Error = Error;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<AccountId> for String {
    fn from(value: AccountId) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_are_32_alphanumerics() {
        assert!(AccountId::parse("account0000000000000000000000001").is_ok());
        assert!(AccountId::parse("e4af2616e751955027c71fec039c6b11").is_ok());
        assert!(AccountId::parse("unrelated_account_b113394f16cb71").is_ok());
        assert!(AccountId::parse("system").is_err());
        assert!(AccountId::parse("account000000000000000000000000/").is_err());
        let id = AccountId::parse("account0000000000000000000000002").unwrap();
        assert_eq!(id.db_name(), "account/ac/co/unt0000000000000000000000002");
        assert_eq!(id.encoded_db_name(), "account%2Fac%2Fco%2Funt0000000000000000000000002");
    }
}
