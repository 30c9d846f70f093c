//! The session cookie: its attributes, and reading it from a request.

use cookie::{Cookie, SameSite};
use http::HeaderMap;
use http::header::{COOKIE, HeaderValue};
use session_core::Timestamp;

/// The attributes every session cookie is sent with, fixed when the layer
/// is built.
#[derive(Clone, Debug)]
pub(crate) struct CookieSettings {
    pub(crate) name: String,
    pub(crate) path: String,
    pub(crate) domain: Option<String>,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: Option<SameSite>,
    /// `false`: a browser-session cookie (no `Max-Age`, no `Expires`).
    pub(crate) persistent: bool,
    /// The removal cookie, built once.
    removal: HeaderValue,
}

impl CookieSettings {
    pub(crate) fn new(
        name: String,
        path: String,
        domain: Option<String>,
        secure: bool,
        http_only: bool,
        same_site: Option<SameSite>,
        persistent: bool,
    ) -> Result<Self, crate::ConfigError> {
        let mut settings = Self {
            name,
            path,
            domain,
            secure,
            http_only,
            same_site,
            persistent,
            removal: HeaderValue::from_static(""),
        };
        let mut removal = settings.base(String::new());
        removal.make_removal();
        settings.removal = HeaderValue::try_from(removal.to_string()).map_err(|_| {
            crate::ConfigError::new("cookie name, path or domain is not a valid header value")
        })?;
        Ok(settings)
    }

    fn base(&self, value: String) -> Cookie<'static> {
        let mut cookie = Cookie::new(self.name.clone(), value);
        cookie.set_path(self.path.clone());
        if let Some(domain) = &self.domain {
            cookie.set_domain(domain.clone());
        }
        cookie.set_secure(self.secure);
        cookie.set_http_only(self.http_only);
        cookie.set_same_site(self.same_site);
        cookie
    }

    /// `Set-Cookie` for `value`, expiring with the server-side session
    /// (unless it is a browser-session cookie).
    pub(crate) fn set(&self, value: String, expires_at: Timestamp) -> Option<HeaderValue> {
        let mut cookie = self.base(value);
        if self.persistent {
            // Whole seconds, rounded up: a session with 0.3 s left must not
            // get `Max-Age=0`, which deletes the cookie at once.
            let left = expires_at.duration_since(Timestamp::now());
            let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
            cookie.set_max_age(time::Duration::seconds(seconds));
            // Expires as well, for clients that predate Max-Age.
            if let Some(at) = expires_at.to_offset_date_time() {
                cookie.set_expires(at);
            }
        }
        HeaderValue::try_from(cookie.to_string()).ok()
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
