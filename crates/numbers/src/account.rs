//! Account ids: the workspace's one account-id type, [`docstore::AccountId`] (32 lowercase
//! letters, digits or `_`; the rule and why are documented there). A refused id becomes this
//! crate's [`crate::Error::InvalidAccountId`] through `?`.

pub use docstore::AccountId;
