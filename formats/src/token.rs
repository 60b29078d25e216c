//! The proxy's admin token as its clients hold it.

use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

/// The admin API's bearer token (`Authorization: Bearer <token>`): a secret, so its `Debug` form
/// never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    pub fn new(token: String) -> AdminToken {
        AdminToken(token)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for AdminToken {
    type Err = Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(AdminToken(s.to_owned()))
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token() {
        let token: AdminToken = "t0ken".parse().expect("infallible");
        assert_eq!(format!("{token:?}"), "AdminToken(<redacted>)");
        assert_eq!(token.as_str(), "t0ken");
    }
}
