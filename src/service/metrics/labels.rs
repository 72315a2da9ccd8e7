//! The label values of Latchkey's metrics: each a closed enum, so that a
//! handle is found by index (never by a map lookup) and no request can add a
//! series.
//!
//! Rules: a value's index is its place in `ALL`; label text is fixed here and
//! documented in the README's metrics section.

/// A closed set of label values: `ALL`, `COUNT`, `label()` and `index()`.
macro_rules! label_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];
            pub const COUNT: usize = Self::ALL.len();

            pub fn label(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            pub fn index(self) -> usize {
                self as usize
            }
        }
    };
}

label_enum! {
    /// What was presented, as far as it could be told.
    Kind {
        ApiKey = "api_key",
        ServiceKey = "service_key",
        AccessToken = "access_token",
        /// Malformed: neither a key of this deployment nor an access token.
        Unrecognised = "unrecognised",
    }
}

label_enum! {
    /// How a verification ended.
    Outcome {
        Ok = "ok",
        /// Wrong shape, checksum or prefix: refused before the database.
        Malformed = "malformed",
        /// Well-formed, but no such credential.
        Unknown = "unknown",
        Revoked = "revoked",
        Expired = "expired",
        Disabled = "disabled",
        AddressDenied = "address_denied",
        RateLimited = "rate_limited",
        /// The database failed (the caller got a 500 or 503).
        Error = "error",
    }
}

impl From<crate::domain::UsageOutcome> for Outcome {
    fn from(o: crate::domain::UsageOutcome) -> Self {
        use crate::domain::UsageOutcome as U;
        match o {
            U::Ok => Self::Ok,
            U::AddressDenied => Self::AddressDenied,
            U::RateLimited => Self::RateLimited,
            U::Expired => Self::Expired,
            U::Revoked => Self::Revoked,
            U::Disabled => Self::Disabled,
            // Decided by the route after verification; counted apart.
            U::ScopeDenied => Self::Ok,
        }
    }
}

label_enum! {
    /// Where the verifier found a credential.
    CacheResult {
        Hit = "hit",
        Miss = "miss",
        /// Past its bound but served while the database was unreachable.
        Stale = "stale",
    }
}

label_enum! {
    /// An OAuth grant that issued tokens.
    Grant {
        AuthorizationCode = "authorization_code",
        RefreshToken = "refresh_token",
        ClientCredentials = "client_credentials",
    }
}

label_enum! {
    /// How a step of signing in ended.
    LoginOutcome {
        /// Signed in (password alone, or password and second factor).
        Succeeded = "succeeded",
        /// Wrong email or password.
        Failed = "failed",
        /// The password was right; the second factor comes next.
        TotpRequired = "totp_required",
        /// A wrong, used or refused TOTP or recovery code.
        TotpFailed = "totp_failed",
        /// Not a code at all.
        TotpInvalid = "totp_invalid",
        /// The half-signed-in account is gone.
        Expired = "expired",
        Throttled = "throttled",
        /// Every password hashing thread stayed taken (503).
        Busy = "busy",
        Error = "error",
    }
}

impl Kind {
    /// The kind of a credential the verifier knows.
    pub fn of(principal: &crate::service::principal::Principal) -> Self {
        use crate::service::principal::Principal;
        match principal {
            Principal::ApiKey { .. } => Self::ApiKey,
            Principal::ServiceKey { .. } => Self::ServiceKey,
            Principal::AccessToken { .. } => Self::AccessToken,
        }
    }
}
