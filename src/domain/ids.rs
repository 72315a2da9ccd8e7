//! Id newtypes: a `KeyId` is not a `TeamId`, though both are stored as TEXT.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}

id_type! {
    /// An API key or service key (`key_…`).
    KeyId;
    /// A team (`team_…`).
    TeamId;
    /// A person (`user_…`).
    UserId;
    /// An OAuth client app (`app_…`), also its public `client_id`.
    ClientId;
    /// A pending invitation.
    InviteId;
    /// A signed-in session.
    SessionId;
    /// An OAuth access or refresh token row.
    TokenId;
    /// A webhook endpoint (`we_…`).
    EndpointId;
}
