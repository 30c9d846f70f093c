//! Building a [`SessionLayer`]: keys, cookie attributes, transports, and
//! what to do when the store fails.

use std::fmt;
use std::sync::Arc;

use cookie::SameSite;
use http::{HeaderName, StatusCode};
use session_core::{PrincipalIndex, SessionConfig, SessionManager, SessionStore};

use crate::cookie::{Attributes, CookieSettings};
use crate::jar::Jar;
use crate::keys::KeyRing;
use crate::sealed::{MAX_COOKIE_BYTES, Sealer};
use crate::traced::Traced;
use crate::{ConfigError, SessionLayer};

/// The default cookie name.
pub const DEFAULT_COOKIE_NAME: &str = "sid";

/// The smallest [`SessionLayerBuilder::with_max_cookie_bytes`]: room for an
/// empty sealed session and a name.
const MIN_COOKIE_BYTES: usize = 256;

/// What a request gets when the store cannot load its session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreUnavailable {
    /// Fail closed (the default): the response becomes the failure status
    /// (`503 Service Unavailable` unless changed), whatever the handler
    /// answered, and the failure is logged.
    #[default]
    FailClosed,
    /// Degraded service: the handler gets an empty session that is never
    /// stored, and the response goes out without any session cookie change.
    /// For sites where serving an anonymous page beats serving an error.
    ContinueWithoutSession,
}

/// Cookie-only mode: how sessions are sealed into the cookie.
#[derive(Debug)]
pub(crate) struct CookieOnly {
    pub(crate) sealer: Sealer,
    /// The cookie's name (the header's without a cookie): bound into every
    /// sealed value and counted in the size limit.
    pub(crate) name: Arc<str>,
    /// The most `name=value` may take.
    pub(crate) limit: usize,
}

/// Everything a request needs, shared by all requests of one layer.
pub(crate) struct Shared {
    /// Over the store; in cookie-only mode over an empty jar, a template
    /// each request copies with a jar of its own.
    pub(crate) manager: SessionManager,
    /// `Some` in cookie-only mode.
    pub(crate) cookie_only: Option<CookieOnly>,
    pub(crate) keys: KeyRing,
    pub(crate) cookie: Option<CookieSettings>,
    pub(crate) header: Option<HeaderName>,
    pub(crate) on_unavailable: StoreUnavailable,
    pub(crate) failure_status: StatusCode,
    pub(crate) backend: &'static str,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayer")
            .field("backend", &self.backend)
            .field("config", self.manager.config())
            .field("keys", &self.keys)
            .field("cookie_only", &self.cookie_only.is_some())
            .field("cookie", &self.cookie)
            .field("header", &self.header)
            .field("on_unavailable", &self.on_unavailable)
            .field("failure_status", &self.failure_status)
            .finish()
    }
}

/// Builds a [`SessionLayer`]; see [`SessionLayer::builder`]. Every setting
/// is checked by [`build`](Self::build), never on a request.
///
/// Defaults: cookie `sid` with `HttpOnly`, `SameSite=Lax`, `Path=/`,
/// `Secure`, and `Max-Age`/`Expires` following the server-side expiry; no
/// header transport; [`StoreUnavailable::FailClosed`] with `503`; the
/// default [`SessionConfig`].
#[must_use]
pub struct SessionLayerBuilder {
    /// `None`: cookie-only sessions.
    store: Option<Arc<dyn SessionStore>>,
    /// The same store when it keeps a principal index.
    index: Option<Arc<dyn PrincipalIndex>>,
    backend: &'static str,
    max_cookie_bytes: usize,
    config: SessionConfig,
    keys: Vec<Vec<u8>>,
    cookie_name: String,
    path: String,
    domain: Option<String>,
    secure: bool,
    http_only: bool,
    same_site: Option<SameSite>,
    persistent: bool,
    host_prefix: bool,
    cookie_transport: bool,
    header: Option<String>,
    on_unavailable: StoreUnavailable,
    failure_status: StatusCode,
}

impl fmt::Debug for SessionLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayerBuilder")
            .field("backend", &self.backend)
            .field("keys", &self.keys.len())
            .field("cookie_name", &self.cookie_name)
            .finish_non_exhaustive()
    }
}

impl SessionLayerBuilder {
    pub(crate) fn new<S: SessionStore>(store: S) -> Self {
        Self::with_store(Some(Arc::new(store)), backend_name::<S>())
    }

    pub(crate) fn indexed<S: PrincipalIndex>(store: S) -> Self {
        let store: Arc<dyn PrincipalIndex> = Arc::new(store);
        let mut builder = Self::with_store(
            Some(Arc::clone(&store) as Arc<dyn SessionStore>),
            backend_name::<S>(),
        );
        builder.index = Some(store);
        builder
    }

    pub(crate) fn cookie_only() -> Self {
        Self::with_store(None, "cookie")
    }

    fn with_store(store: Option<Arc<dyn SessionStore>>, backend: &'static str) -> Self {
        Self {
            store,
            index: None,
            backend,
            max_cookie_bytes: MAX_COOKIE_BYTES,
            config: SessionConfig::new(),
            keys: Vec::new(),
            cookie_name: DEFAULT_COOKIE_NAME.to_owned(),
            path: "/".to_owned(),
            domain: None,
            secure: true,
            http_only: true,
            same_site: Some(SameSite::Lax),
            persistent: true,
            host_prefix: false,
            cookie_transport: true,
            header: None,
            on_unavailable: StoreUnavailable::FailClosed,
            failure_status: StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The lifecycle policy: idle TTL, absolute lifetime, rolling expiry,
    /// `touch_after`, `save_uninitialized` (see [`SessionConfig`]).
    pub fn with_config(mut self, config: SessionConfig) -> Self {
        self.config = config;
        self
    }

    /// The key that signs cookies and tokens (at least
    /// [`MIN_KEY_BYTES`](crate::MIN_KEY_BYTES) bytes; use 64 random ones).
    /// It goes first in the key ring; keys added earlier keep verifying.
    pub fn with_key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.keys.insert(0, key.as_ref().to_vec());
        self
    }

    /// A retired key: it still verifies cookies it signed (which are then
    /// re-signed with the current key), but signs nothing. Keep it until
    /// those cookies have expired.
    pub fn with_previous_key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.keys.push(key.as_ref().to_vec());
        self
    }

    /// The backend name in logs and traces. Defaults to the store crate's
    /// (`memory` for `session_store_memory::MemoryStore`), or the type's
    /// name for other stores.
    pub fn with_backend_name(mut self, name: &'static str) -> Self {
        self.backend = name;
        self
    }

    /// The cookie's name (default `sid`). With
    /// [`with_host_prefix`](Self::with_host_prefix) it gets `__Host-` in
    /// front.
    pub fn with_cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie_name = name.into();
        self
    }

    /// `Secure` (default on): the browser sends the cookie only over HTTPS.
    /// Browsers make an exception for `http://localhost` (and loopback
    /// addresses), so local development works with it on. Turn it off only
    /// for plain-HTTP deployments on a trusted network; anyone on the path
    /// can then read the cookie and take over the session.
    pub fn with_secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// `HttpOnly` (default on): scripts cannot read the cookie, so an XSS
    /// bug cannot steal the session. There is rarely a reason to turn it off.
    pub fn with_http_only(mut self, http_only: bool) -> Self {
        self.http_only = http_only;
        self
    }

    /// `SameSite` (default `Lax`): cross-site subrequests and POSTs carry no
    /// cookie, which stops most CSRF. `None` omits the attribute; `Strict`
    /// also drops the cookie on links from other sites; `SameSite=None`
    /// (the value) requires `Secure`.
    pub fn with_same_site(mut self, same_site: Option<SameSite>) -> Self {
        self.same_site = same_site;
        self
    }

    /// `Path` (default `/`).
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// `Domain` (default none: the cookie goes back only to the host that
    /// set it). Setting it shares the cookie with every subdomain.
    pub fn with_domain(mut self, domain: Option<String>) -> Self {
        self.domain = domain;
        self
    }

    /// The `__Host-` prefix: the browser accepts the cookie only if it is
    /// `Secure`, has `Path=/` and no `Domain`, so no subdomain or plain-HTTP
    /// page can plant or overwrite it. Conflicting settings are refused by
    /// [`build`](Self::build).
    pub fn with_host_prefix(mut self, on: bool) -> Self {
        self.host_prefix = on;
        self
    }

    /// A true browser-session cookie: no `Max-Age` or `Expires`, so the
    /// browser drops it when it closes. The server-side TTL still applies.
    pub fn with_browser_session_cookie(mut self, on: bool) -> Self {
        self.persistent = !on;
        self
    }

    /// Also accept the signed session token in request header `name` (e.g.
    /// `X-Session-Token`), for API clients without a cookie jar. A request
    /// that carries the header (even empty, to start a session) is answered
    /// in the same header: the new token, or an empty value once the
    /// session is gone. Requests without it use the cookie.
    pub fn with_header(mut self, name: impl Into<String>) -> Self {
        self.header = Some(name.into());
        self
    }

    /// Only the header transport: no cookie is read or set. Requires
    /// [`with_header`](Self::with_header).
    pub fn without_cookie(mut self) -> Self {
        self.cookie_transport = false;
        self
    }

    /// Cookie-only mode: the most the cookie (`name=value`) may take, in
    /// bytes. Default and maximum 4096 ([`MAX_COOKIE_BYTES`]), what every
    /// browser keeps; at least 256. A commit whose sealed session would be
    /// larger fails (the response becomes `500`, the error
    /// [`CookieTooLarge`](crate::CookieTooLarge) is logged) rather than
    /// send a cookie the browser drops. Ignored with a store.
    pub fn with_max_cookie_bytes(mut self, bytes: usize) -> Self {
        self.max_cookie_bytes = bytes;
        self
    }

    /// What a request gets when the store fails to load its session
    /// (default [`StoreUnavailable::FailClosed`]).
    pub fn with_on_unavailable(mut self, mode: StoreUnavailable) -> Self {
        self.on_unavailable = mode;
        self
    }

    /// The status of a response replaced because the store failed (default
    /// `503 Service Unavailable`). Must be a 5xx status.
    pub fn with_failure_status(mut self, status: StatusCode) -> Self {
        self.failure_status = status;
        self
    }

    /// Check every setting and build the layer.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the setting: no key or a key shorter than 32
    /// bytes, an invalid cookie name, path, domain or header name,
    /// `__Host-` with a conflicting setting, `SameSite=None` without
    /// `Secure`, no transport, a failure status that is not 5xx, or an
    /// inconsistent [`SessionConfig`].
    pub fn build(self) -> Result<SessionLayer, ConfigError> {
        let keys = KeyRing::new(&self.keys)?;
        let cookie_settings = if self.cookie_transport {
            Some(self.cookie_settings()?)
        } else {
            None
        };
        let header = self
            .header
            .map(|name| {
                let name = HeaderName::try_from(name.as_str())
                    .map_err(|_| ConfigError::new(format!("invalid header name {name:?}")))?;
                if [
                    http::header::COOKIE,
                    http::header::SET_COOKIE,
                    http::header::AUTHORIZATION,
                ]
                .contains(&name)
                {
                    return Err(ConfigError::new(format!(
                        "header {name} cannot carry the session token"
                    )));
                }
                Ok(name)
            })
            .transpose()?;
        if cookie_settings.is_none() && header.is_none() {
            return Err(ConfigError::new(
                "without_cookie needs with_header: a session needs a transport",
            ));
        }
        if !self.failure_status.is_server_error() {
            return Err(ConfigError::new(format!(
                "failure status {} is not a 5xx status: a failed store must not look like success",
                self.failure_status
            )));
        }
        let (manager, cookie_only) = match (self.index, self.store) {
            (Some(index), _) => {
                let traced: Arc<dyn PrincipalIndex> = Arc::new(Traced::new(index, self.backend));
                (SessionManager::with_index(traced, self.config), None)
            }
            (None, Some(store)) => {
                let traced: Arc<dyn SessionStore> = Arc::new(Traced::new(store, self.backend));
                (SessionManager::new(traced, self.config), None)
            }
            (None, None) => {
                let cookie_only = cookie_only_settings(
                    &self.keys,
                    self.max_cookie_bytes,
                    cookie_settings.as_ref(),
                    header.as_ref(),
                )?;
                let empty = Jar::new(Arc::clone(&cookie_only.name), cookie_only.limit, None);
                (
                    SessionManager::new(Arc::new(empty), self.config),
                    Some(cookie_only),
                )
            }
        };
        let manager = manager.map_err(ConfigError::session)?;
        Ok(SessionLayer::from_shared(Shared {
            manager,
            cookie_only,
            keys,
            cookie: cookie_settings,
            header,
            on_unavailable: self.on_unavailable,
            failure_status: self.failure_status,
            backend: self.backend,
        }))
    }

    fn cookie_settings(&self) -> Result<CookieSettings, ConfigError> {
        if !is_token(&self.cookie_name) {
            return Err(ConfigError::new(format!(
                "cookie name {:?} is not an RFC 6265 token",
                self.cookie_name
            )));
        }
        for (what, value) in [("path", Some(&self.path)), ("domain", self.domain.as_ref())] {
            if let Some(value) = value
                && (value.is_empty() || value.bytes().any(|b| b == b';' || b.is_ascii_control()))
            {
                return Err(ConfigError::new(format!("invalid cookie {what} {value:?}")));
            }
        }
        let name = if self.host_prefix {
            let conflict = if !self.secure {
                Some("with_secure(false)")
            } else if self.domain.is_some() {
                Some("a Domain")
            } else if self.path != "/" {
                Some("a Path other than /")
            } else {
                None
            };
            if let Some(conflict) = conflict {
                return Err(ConfigError::new(format!(
                    "the __Host- prefix requires Secure, Path=/ and no Domain; got {conflict}"
                )));
            }
            format!("__Host-{}", self.cookie_name)
        } else {
            self.cookie_name.clone()
        };
        if self.same_site == Some(SameSite::None) && !self.secure {
            return Err(ConfigError::new(
                "SameSite=None requires Secure: browsers reject it otherwise",
            ));
        }
        CookieSettings::new(Attributes {
            name,
            path: self.path.clone(),
            domain: self.domain.clone(),
            secure: self.secure,
            http_only: self.http_only,
            same_site: self.same_site,
            persistent: self.persistent,
        })
    }
}

/// The cookie-only settings, checked.
fn cookie_only_settings(
    keys: &[Vec<u8>],
    max_cookie_bytes: usize,
    cookie: Option<&CookieSettings>,
    header: Option<&HeaderName>,
) -> Result<CookieOnly, ConfigError> {
    if !(MIN_COOKIE_BYTES..=MAX_COOKIE_BYTES).contains(&max_cookie_bytes) {
        return Err(ConfigError::new(format!(
            "max_cookie_bytes must be between {MIN_COOKIE_BYTES} and {MAX_COOKIE_BYTES}, got {}",
            max_cookie_bytes
        )));
    }
    let name: Arc<str> = match (cookie, header) {
        (Some(cookie), _) => cookie.name.as_str().into(),
        (None, Some(header)) => header.as_str().into(),
        (None, None) => return Err(ConfigError::new("a session needs a transport")),
    };
    Ok(CookieOnly {
        sealer: Sealer::new(keys)?,
        name,
        limit: max_cookie_bytes,
    })
}

/// An RFC 6265 cookie name: visible ASCII except separators.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// `memory` for `session_store_memory::…`, else the type's own name.
fn backend_name<S>() -> &'static str {
    let full = std::any::type_name::<S>();
    if let Some(rest) = full.strip_prefix("session_store_") {
        return rest.split("::").next().unwrap_or(rest);
    }
    let outer = full.split('<').next().unwrap_or(full);
    outer.rsplit("::").next().unwrap_or(outer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_come_from_the_store_crate() {
        assert_eq!(
            backend_name::<session_store_memory::MemoryStore>(),
            "memory"
        );
        assert_eq!(backend_name::<Shared>(), "Shared");
        assert_eq!(backend_name::<Arc<dyn SessionStore>>(), "Arc");
    }

    #[test]
    fn cookie_names_must_be_tokens() {
        assert!(is_token("sid"));
        assert!(is_token("__Host-sid"));
        for bad in ["", "a b", "a;b", "a=b", "é", "a\"b"] {
            assert!(!is_token(bad), "{bad:?}");
        }
    }
}
