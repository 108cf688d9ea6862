//! Daemon errors. The user-facing ones carry Docker's messages and map to Docker's status codes.

use crate::{netlink::NetlinkError, store::StoreError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409.
    #[error("{0}")]
    Conflict(String),
    /// 403: the request is valid but not allowed in this state.
    #[error("{0}")]
    Forbidden(String),
    /// 400.
    #[error("{0}")]
    InvalidParameter(String),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("datapath: {0}")]
    Datapath(#[source] Box<crate::datapath::DatapathError>),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The HTTP status Docker uses for this kind of error.
    pub fn status(&self) -> u16 {
        match self {
            Error::NotFound(_) => 404,
            Error::Conflict(_) => 409,
            Error::Forbidden(_) => 403,
            Error::InvalidParameter(_) => 400,
            Error::Netlink(_) | Error::Store(_) | Error::Datapath(_) | Error::Io { .. } => 500,
        }
    }

    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
