//! The session cookie: its attributes, and reading it from a request.

use std::fmt::Write as _;

use cookie::{Cookie, SameSite};
use http::HeaderMap;
use http::header::{COOKIE, HeaderValue};
use session_core::Timestamp;

use crate::ConfigError;

/// The attributes every session cookie is sent with, fixed when the layer
/// is built.
///
/// The `cookie` crate renders (and validates) the fixed attributes once, at
/// build time; a request only adds the value, `Max-Age` and `Expires`.
#[derive(Clone, Debug)]
pub(crate) struct CookieSettings {
    pub(crate) name: String,
    /// `false`: a browser-session cookie (no `Max-Age`, no `Expires`).
    pub(crate) persistent: bool,
    /// `; HttpOnly; SameSite=Lax; Secure; Path=/…`, as the `cookie` crate
    /// renders them.
    attributes: String,
    /// The removal cookie.
    removal: HeaderValue,
}

/// The parts of a cookie the builder sets.
pub(crate) struct Attributes {
    pub(crate) name: String,
    pub(crate) path: String,
    pub(crate) domain: Option<String>,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: Option<SameSite>,
    pub(crate) persistent: bool,
}

impl CookieSettings {
    pub(crate) fn new(a: Attributes) -> Result<Self, ConfigError> {
        let mut cookie = Cookie::new(a.name.clone(), "");
        cookie.set_path(a.path);
        if let Some(domain) = a.domain {
            cookie.set_domain(domain);
        }
        cookie.set_secure(a.secure);
        cookie.set_http_only(a.http_only);
        cookie.set_same_site(a.same_site);
        let invalid =
            || ConfigError::new("cookie name, path or domain is not a valid header value");
        let rendered = cookie.to_string();
        let attributes = rendered
            .strip_prefix(&format!("{}=", a.name))
            .ok_or_else(invalid)?
            .to_owned();
        cookie.make_removal();
        let removal = HeaderValue::try_from(cookie.to_string()).map_err(|_| invalid())?;
        Ok(Self {
            name: a.name,
            persistent: a.persistent,
            attributes,
            removal,
        })
    }

    /// `Set-Cookie` for `value`, expiring with the server-side session
    /// (unless it is a browser-session cookie).
    pub(crate) fn set(&self, value: &str, expires_at: Timestamp) -> Option<HeaderValue> {
        let mut out =
            String::with_capacity(self.name.len() + 1 + value.len() + self.attributes.len() + 64);
        out.push_str(&self.name);
        out.push('=');
        out.push_str(value);
        out.push_str(&self.attributes);
        if self.persistent {
            // Whole seconds, rounded up: a session with 0.3 s left must not
            // get `Max-Age=0`, which deletes the cookie at once.
            let left = expires_at.duration_since(Timestamp::now());
            let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            let _ = write!(out, "; Max-Age={seconds}");
            // Expires as well, for clients that predate Max-Age.
            let at = std::time::UNIX_EPOCH
                + std::time::Duration::from_millis(
                    u64::try_from(expires_at.as_millis()).unwrap_or(0),
                );
            out.push_str("; Expires=");
            out.push_str(&httpdate::fmt_http_date(at));
        }
        HeaderValue::try_from(out).ok()
    }

    /// `Set-Cookie` that deletes the cookie.
    pub(crate) fn removal(&self) -> HeaderValue {
        self.removal.clone()
    }

    /// Every value of our cookie in the request's `Cookie` headers, in
    /// order (a browser sends several when cookies of one name were set
    /// for different paths or domains).
    pub(crate) fn values<'a>(&'a self, headers: &'a HeaderMap) -> impl Iterator<Item = &'a str> {
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|h| h.to_str().ok())
            .flat_map(Cookie::split_parse)
            .filter_map(move |cookie| {
                let cookie = cookie.ok()?;
                if cookie.name_raw()? != self.name {
                    return None;
                }
                let value = cookie.value_raw()?;
                Some(value.trim_matches('"'))
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::time::Duration;

    use super::*;

    fn settings(persistent: bool) -> CookieSettings {
        CookieSettings::new(Attributes {
            name: "sid".to_owned(),
            path: "/".to_owned(),
            domain: Some("example.test".to_owned()),
            secure: true,
            http_only: true,
            same_site: Some(SameSite::Lax),
            persistent,
        })
        .unwrap()
    }

    #[test]
    fn what_is_sent_parses_back_with_every_attribute() {
        let expires_at = Timestamp::now() + Duration::from_millis(90_500);
        let header = settings(true).set("abc.def", expires_at).unwrap();
        let cookie = Cookie::parse(header.to_str().unwrap().to_owned()).unwrap();
        assert_eq!((cookie.name(), cookie.value()), ("sid", "abc.def"));
        assert_eq!(cookie.http_only(), Some(true));
        assert_eq!(cookie.secure(), Some(true));
        assert_eq!(cookie.same_site(), Some(SameSite::Lax));
        assert_eq!(cookie.path(), Some("/"));
        assert_eq!(cookie.domain(), Some("example.test"));
        assert_eq!(cookie.max_age().unwrap().whole_seconds(), 91, "rounded up");
        let expires = Timestamp::from(cookie.expires_datetime().unwrap());
        assert_eq!(expires.as_millis() / 1000, expires_at.as_millis() / 1000);
    }

    #[test]
    fn a_browser_session_cookie_has_no_lifetime() {
        let header = settings(false).set("v", Timestamp::now()).unwrap();
        let cookie = Cookie::parse(header.to_str().unwrap().to_owned()).unwrap();
        assert_eq!(cookie.max_age(), None);
        assert_eq!(cookie.expires(), None);
    }

    proptest::proptest! {
        /// Fuzzing the `Cookie` header reader: no header value panics, and
        /// what it finds under our name is a slice of the header.
        #[test]
        fn fuzz_cookie_headers_never_panic(
            header in proptest::prop_oneof![
                proptest::prelude::any::<String>(),
                "([a-z]{1,4}=[^;]{0,12}; ?){0,4}sid=[^;]{0,80}(; [a-z]{1,4}=[^;]{0,8}){0,3}",
            ]
        ) {
            let mut headers = HeaderMap::new();
            if let Ok(value) = http::HeaderValue::from_str(&header) {
                headers.insert(http::header::COOKIE, value);
            }
            for found in settings(true).values(&headers) {
                proptest::prop_assert!(header.contains(found));
            }
        }
    }

    #[test]
    fn the_removal_cookie_expires_at_once() {
        let removal = settings(true).removal();
        let cookie = Cookie::parse(removal.to_str().unwrap().to_owned()).unwrap();
        assert_eq!(cookie.value(), "");
        assert_eq!(cookie.max_age().unwrap().whole_seconds(), 0);
        assert_eq!(
            cookie.domain(),
            Some("example.test"),
            "same scope as the cookie"
        );
    }
}
