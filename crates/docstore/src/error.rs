//! The one error type of `docstore`.

/// The result type of every `docstore` call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to a document store.
///
/// Display texts are lowercase, without a trailing period, and name the database and document.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A write named a stale `_rev` (or none, for an existing document): CouchDB's 409.
    #[error("document update conflict on {db}/{id}")]
    Conflict {
        /// The database.
        db: String,
        /// The document id.
        id: String,
    },
    /// The database does not exist (404 on the database itself).
    #[error("database {db} does not exist")]
    DbNotFound {
        /// The database.
        db: String,
    },
    /// The document does not exist (or is deleted) where the operation needs it to.
    #[error("document {db}/{id} not found")]
    DocNotFound {
        /// The database.
        db: String,
        /// The document id.
        id: String,
    },
    /// `create_db` of a database that exists (CouchDB's 412 `file_exists`).
    #[error("database {db} already exists")]
    DbExists {
        /// The database.
        db: String,
    },
    /// A database name that CouchDB would refuse.
    #[error("illegal database name {name:?}: {reason}")]
    IllegalDbName {
        /// The refused name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The request was malformed (400): a bad document id, bad JSON, a bad rev.
    #[error("bad request: {reason}")]
    BadRequest {
        /// CouchDB's `reason`, or ours.
        reason: String,
    },
    /// A value that must be an account id is not one (see [`crate::AccountId`]).
    #[error(
        "{value:?} is not an account id (32 lowercase letters, digits or `_`, raw or as the \
         account/ab/cd/… database name)"
    )]
    InvalidAccountId {
        /// The refused value.
        value: String,
    },
    /// 401: no or wrong credentials.
    #[error("unauthorized: {reason}")]
    Unauthorized {
        /// CouchDB's `reason`.
        reason: String,
    },
    /// 403: credentials fine, access refused (also a `validate_doc_update` refusal).
    #[error("forbidden: {reason}")]
    Forbidden {
        /// CouchDB's `reason`.
        reason: String,
    },
    /// Any other HTTP status from the server.
    #[error("http {status} {error}: {reason}")]
    Http {
        /// The HTTP status.
        status: u16,
        /// CouchDB's `error` field.
        error: String,
        /// CouchDB's `reason` field.
        reason: String,
    },
    /// The server could not be reached, or the connection broke.
    #[error("transport error talking to {url}: {message}")]
    Transport {
        /// What was being requested.
        url: String,
        /// The underlying error, rendered.
        message: String,
    },
    /// A request took longer than its timeout.
    #[error("request to {url} timed out")]
    Timeout {
        /// What was being requested.
        url: String,
    },
    /// A response or a stored document could not be decoded.
    #[error("cannot decode {what}: {message}")]
    Decode {
        /// What was being decoded (a document id, a response).
        what: String,
        /// The decoder's message.
        message: String,
    },
    /// The embedded store's database failed.
    #[error("embedded store: {0}")]
    Embedded(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The backend does not have this operation (e.g. JavaScript views on the embedded store).
    #[error("{what} is not supported by the {backend} backend")]
    Unsupported {
        /// The operation.
        what: &'static str,
        /// The backend's name.
        backend: &'static str,
    },
    /// A change feed failed in a way that retrying will not fix.
    #[error("change feed of {db}: {reason}")]
    Feed {
        /// The database.
        db: String,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// Whether retrying the same request later may succeed (network trouble, timeouts, 5xx, 429).
    /// Conflicts are not transient: the caller must re-read and decide again.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport { .. } | Error::Timeout { .. } => true,
            Error::Http { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// The HTTP status this error corresponds to in CouchDB terms.
    pub fn status(&self) -> u16 {
        match self {
            Error::Conflict { .. } => 409,
            Error::DbNotFound { .. } | Error::DocNotFound { .. } => 404,
            Error::DbExists { .. } => 412,
            Error::IllegalDbName { .. }
            | Error::BadRequest { .. }
            | Error::InvalidAccountId { .. } => 400,
            Error::Unauthorized { .. } => 401,
            Error::Forbidden { .. } => 403,
            Error::Http { status, .. } => *status,
            Error::Timeout { .. } => 504,
            Error::Transport { .. } => 502,
            Error::Unsupported { .. } => 501,
            Error::Decode { .. } | Error::Embedded(_) | Error::Feed { .. } => 500,
        }
    }
}
