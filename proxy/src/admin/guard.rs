//! Who may use the admin API: the checks every admin request passes before any route runs.
//!
//! A loopback listener keeps other hosts out, not the user's own browser. Any page the user visits
//! can send a form `POST` to `127.0.0.1:8081` (a "simple" request, which needs no CORS preflight),
//! and a page whose DNS name is switched to `127.0.0.1` after it loaded (DNS rebinding) can even
//! read the answers, because the browser believes it talks to the page's own site. In order:
//!
//! 1. **Host**, on every request: a loopback address (`127.0.0.0/8`, `::1`) or `localhost`, the
//!    address the client connected to, the `server.admin_listen` address, or a name in
//!    `server.admin_hosts`; any port. Otherwise `421 misdirected`. A rebinding page reaches the
//!    listener only under a name of its own, which is not on that list; the port proves nothing
//!    (Docker publishes the listener on another one).
//! 2. **Origin and `Sec-Fetch-Site`**, on every state change (any method but `GET` and `HEAD`): an
//!    `Origin`, when sent, must be the listener's own origin as the request addresses it
//!    (`http://` and the `Host` value); `Sec-Fetch-Site`, when sent, must be `same-origin` or
//!    `none`. `same-site` is refused too: another port on localhost is the same site. Otherwise
//!    `403 cross_site`.
//! 3. **The bearer token** when `server.admin_token` is set (`401 unauthorized`); `GET
//!    /admin/ready` (which tells nothing but that the proxy runs) and the dashboard page's files
//!    (which hold no data; a browser cannot send a token when it opens a page) need none.
//! 4. **A request a browser must preflight**, on every state change: a body must be
//!    `Content-Type: application/json` (else `415 unsupported_media_type`), and a `POST` must say
//!    so even without a body (else `403 cross_site`). `PUT` and `DELETE` are never simple, so a
//!    page cannot send them cross-site without a preflight, which this API never grants.
//!
//! curl, the lab and the load generator send no `Origin` and no `Sec-Fetch-Site`, so 2 lets them
//! through; 1 and 4 are what they must meet.

use std::net::IpAddr;

use http::{header, HeaderMap, Method, StatusCode};

use crate::config::ServerConfig;

/// The path that needs no token: the compose healthcheck's, which answers no more than "up".
pub(super) const READY_PATH: &str = "/admin/ready";

/// What the admin API accepts in `Host` and which token it wants.
#[derive(Clone)]
pub(super) struct Guard {
    /// Lowercase names: `localhost` and the configured ones.
    names: Vec<String>,
    /// Addresses besides loopback and the connection's own: `admin_listen`'s, the configured ones.
    addrs: Vec<IpAddr>,
    token: Option<String>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("names", &self.names)
            .field("addrs", &self.addrs)
            .field("token_set", &self.token.is_some())
            .finish()
    }
}

/// Why a request was refused before it reached a route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum AdminRefusal {
    #[error("{0}")]
    Misdirected(String),
    #[error("{0}")]
    CrossSite(String),
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("{0}")]
    UnsupportedMediaType(String),
}

impl AdminRefusal {
    pub(super) fn status(&self) -> (StatusCode, &'static str) {
        match self {
            AdminRefusal::Misdirected(_) => (StatusCode::MISDIRECTED_REQUEST, "misdirected"),
            AdminRefusal::CrossSite(_) => (StatusCode::FORBIDDEN, "cross_site"),
            AdminRefusal::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AdminRefusal::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
        }
    }
}

impl Guard {
    pub(super) fn new(server: &ServerConfig) -> Guard {
        let mut names = vec!["localhost".to_string()];
        let mut addrs = Vec::new();
        let listen = server.admin_listen.ip();
        if !listen.is_unspecified() {
            addrs.push(listen.to_canonical());
        }
        for h in &server.admin_hosts {
            match h.parse::<IpAddr>() {
                Ok(ip) => addrs.push(ip.to_canonical()),
                Err(_) => names.push(h.to_ascii_lowercase()),
            }
        }
        Guard {
            names,
            addrs,
            token: server.admin_token.clone(),
        }
    }

    /// Runs the checks in the module's order; `local` is the address the client connected to.
    pub(super) fn check(
        &self,
        req: &http::request::Parts,
        local: Option<IpAddr>,
    ) -> Result<(), AdminRefusal> {
        let authority = self.check_host(req, local)?;
        let changes_state = !matches!(req.method, Method::GET | Method::HEAD);
        if changes_state {
            check_same_origin(&req.headers, &authority)?;
        }
        let path = req.uri.path();
        let public = req.method == Method::GET
            && (path == READY_PATH || crate::dashboard::asset(path).is_some());
        if !public && !self.authorized(req) {
            return Err(AdminRefusal::Unauthorized);
        }
        if changes_state {
            check_preflighted(&req.method, &req.headers)?;
        }
        Ok(())
    }

    /// Checks `Host` (and an absolute-form target's authority); returns the `Host` value.
    fn check_host(
        &self,
        req: &http::request::Parts,
        local: Option<IpAddr>,
    ) -> Result<String, AdminRefusal> {
        let mut hosts = req.headers.get_all(header::HOST).iter();
        let host =
            match (hosts.next(), hosts.next()) {
                (Some(h), None) => h.to_str().unwrap_or_default().to_string(),
                (None, _) => return Err(AdminRefusal::Misdirected(
                    "a Host header is required (the admin API checks which name it was called by)"
                        .into(),
                )),
                (Some(_), Some(_)) => {
                    return Err(AdminRefusal::Misdirected("more than one Host".into()))
                }
            };
        let mut named = vec![host.as_str()];
        if let Some(a) = req.uri.authority() {
            named.push(a.as_str());
        }
        for authority in named {
            let known =
                split_authority(authority).is_some_and(|(name, _)| self.host_allowed(&name, local));
            if !known {
                return Err(AdminRefusal::Misdirected(format!(
                    "the admin API does not answer to the name {authority:?}; use 127.0.0.1, \
                     localhost, or a name listed in server.admin_hosts"
                )));
            }
        }
        Ok(host)
    }

    fn host_allowed(&self, name: &str, local: Option<IpAddr>) -> bool {
        match name.parse::<IpAddr>() {
            Ok(ip) => {
                let ip = ip.to_canonical();
                ip.is_loopback()
                    || local.is_some_and(|l| l.to_canonical() == ip)
                    || self.addrs.contains(&ip)
            }
            Err(_) => self.names.iter().any(|n| n == name),
        }
    }

    fn authorized(&self, req: &http::request::Parts) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        req.headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| constant_time_eq(given.trim().as_bytes(), token.as_bytes()))
    }
}

/// A state change must come from the listener's own origin, or from no page at all.
fn check_same_origin(headers: &HeaderMap, host: &str) -> Result<(), AdminRefusal> {
    for origin in headers.get_all(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("null");
        if !same_origin(origin, host) {
            return Err(AdminRefusal::CrossSite(format!(
                "a state change from the page at {origin:?} is refused: only the admin \
                 listener's own origin (http://{host}) or a client that is no web page may change \
                 the proxy"
            )));
        }
    }
    for site in headers.get_all("sec-fetch-site") {
        let site = site.to_str().unwrap_or_default();
        if !matches!(site, "same-origin" | "none") {
            return Err(AdminRefusal::CrossSite(format!(
                "a state change with Sec-Fetch-Site: {site} is refused; only same-origin or none"
            )));
        }
    }
    Ok(())
}

/// `origin` (`http://host[:port]`) names the same host and port as `host`, the `Host` value.
fn same_origin(origin: &str, host: &str) -> bool {
    let Some(rest) = origin
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("http://"))
        .and_then(|_| origin.get(7..))
    else {
        return false;
    };
    match (split_authority(rest), split_authority(host)) {
        (Some((o_name, o_port)), Some((h_name, h_port))) => {
            o_name == h_name && o_port.unwrap_or(80) == h_port.unwrap_or(80)
        }
        _ => false,
    }
}

/// A state change must be one no page can send without a CORS preflight.
fn check_preflighted(method: &Method, headers: &HeaderMap) -> Result<(), AdminRefusal> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    if json {
        return Ok(());
    }
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    if has_body {
        return Err(AdminRefusal::UnsupportedMediaType(
            "an admin request body must be JSON, sent with Content-Type: application/json".into(),
        ));
    }
    if *method == Method::POST {
        return Err(AdminRefusal::CrossSite(
            "a POST to the admin API must carry Content-Type: application/json, even without a \
             body: a web page cannot send that to another site without asking first"
                .into(),
        ));
    }
    Ok(())
}

/// `host[:port]` or `[v6][:port]` into the lowercase host (brackets removed) and the port;
/// `None` when it is neither.
fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    let (name, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        (v6, after)
    } else if let Some((name, _)) = authority.split_once(':') {
        (name, &authority[name.len()..])
    } else {
        (authority, "")
    };
    let port = match port {
        "" => None,
        p => {
            let digits = p.strip_prefix(':')?;
            if digits.is_empty() {
                None
            } else if digits.bytes().all(|b| b.is_ascii_digit()) {
                Some(digits.parse::<u16>().ok()?)
            } else {
                return None;
            }
        }
    };
    if name.is_empty() || name.contains(['/', '@', ' ']) {
        return None;
    }
    Some((name.to_ascii_lowercase(), port))
}

/// Token comparison whose time does not depend on where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(extra: &str) -> Guard {
        let c = crate::Config::from_toml_str(&format!(
            "[server]\nadmin_listen = \"10.1.2.3:8081\"\n{extra}"
        ))
        .expect("a valid config");
        Guard::new(&c.server)
    }

    fn req(method: &str, host: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().method(method).uri("/admin/status");
        if !host.is_empty() {
            b = b.header("host", host);
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("a request").into_parts().0
    }

    fn refusal(g: &Guard, r: &http::request::Parts) -> Option<&'static str> {
        g.check(r, Some("172.18.0.2".parse().expect("an address")))
            .err()
            .map(|e| e.status().1)
    }

    #[test]
    fn host_names_the_listener_or_is_refused() {
        let g = guard("admin_hosts = [\"Proxy\", \"10.9.9.9\"]");
        for ok in [
            "127.0.0.1:8081",
            "127.0.0.1",
            "127.0.0.2:9000",
            "localhost:8081",
            "LOCALHOST",
            "[::1]:8081",
            "[::ffff:127.0.0.1]:1",
            "10.1.2.3:8081",
            "172.18.0.2:8081",
            "proxy:8081",
            "10.9.9.9",
        ] {
            assert_eq!(refusal(&g, &req("GET", ok, &[])), None, "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8081",
            "localhost.evil.example",
            "proxy.evil.example",
            "10.1.2.4:8081",
            "0.0.0.0:8081",
            "127.0.0.1:port",
            "user@127.0.0.1",
            "",
        ] {
            assert_eq!(
                refusal(&g, &req("GET", bad, &[])),
                Some("misdirected"),
                "{bad:?}"
            );
        }
        let absolute = http::Request::builder()
            .uri("http://evil.example/admin/status")
            .header("host", "127.0.0.1")
            .body(())
            .expect("a request")
            .into_parts()
            .0;
        assert_eq!(refusal(&g, &absolute), Some("misdirected"));
    }

    #[test]
    fn state_changes_come_from_the_same_origin_or_no_page() {
        let g = guard("");
        let json = ("content-type", "application/json");
        let host = "127.0.0.1:8081";
        for ok in [
            vec![json],
            vec![json, ("origin", "http://127.0.0.1:8081")],
            vec![json, ("origin", "HTTP://127.0.0.1:8081")],
            vec![json, ("sec-fetch-site", "same-origin")],
            vec![json, ("sec-fetch-site", "none")],
        ] {
            assert_eq!(refusal(&g, &req("POST", host, &ok)), None, "{ok:?}");
        }
        for bad in [
            vec![json, ("origin", "http://evil.example")],
            vec![json, ("origin", "null")],
            vec![json, ("origin", "http://localhost:8081")],
            vec![json, ("origin", "http://127.0.0.1:3000")],
            vec![json, ("origin", "https://127.0.0.1:8081")],
            vec![json, ("sec-fetch-site", "cross-site")],
            vec![json, ("sec-fetch-site", "same-site")],
        ] {
            assert_eq!(
                refusal(&g, &req("POST", host, &bad)),
                Some("cross_site"),
                "{bad:?}"
            );
        }
        let default_port = req(
            "PUT",
            "localhost",
            &[json, ("origin", "http://localhost:80")],
        );
        assert_eq!(refusal(&g, &default_port), None);
        // Reads are not refused for their Origin: the browser shows a cross-site page nothing.
        let read = req("GET", host, &[("origin", "http://evil.example")]);
        assert_eq!(refusal(&g, &read), None);
    }

    #[test]
    fn a_state_change_must_be_one_a_browser_preflights() {
        let g = guard("");
        let host = "127.0.0.1:8081";
        let form = [
            ("content-type", "application/x-www-form-urlencoded"),
            ("content-length", "1"),
        ];
        assert_eq!(
            refusal(&g, &req("POST", host, &form)),
            Some("unsupported_media_type")
        );
        let text = [("content-type", "text/plain"), ("content-length", "1")];
        assert_eq!(
            refusal(&g, &req("PUT", host, &text)),
            Some("unsupported_media_type")
        );
        assert_eq!(
            refusal(&g, &req("POST", host, &[("content-length", "0")])),
            Some("cross_site")
        );
        let json = [("content-type", "application/json; charset=utf-8")];
        assert_eq!(refusal(&g, &req("POST", host, &json)), None);
        assert_eq!(refusal(&g, &req("DELETE", host, &[])), None);
    }

    #[test]
    fn with_a_token_only_readiness_is_open() {
        let g = guard("admin_token = \"t0k\"");
        let host = [("host", "127.0.0.1")];
        let ready = |method: &str| {
            let mut r = req(method, "", &host);
            r.uri = http::Uri::from_static(READY_PATH);
            r
        };
        assert_eq!(refusal(&g, &ready("GET")), None);
        let mut page = req("GET", "127.0.0.1", &[]);
        page.uri = http::Uri::from_static("/");
        assert_eq!(refusal(&g, &page), None, "the dashboard page holds no data");
        page.headers
            .insert("host", http::HeaderValue::from_static("evil.example"));
        assert_eq!(refusal(&g, &page), Some("misdirected"));
        assert_eq!(refusal(&g, &ready("DELETE")), Some("unauthorized"));
        assert_eq!(
            refusal(&g, &req("GET", "127.0.0.1", &[])),
            Some("unauthorized")
        );
        let auth = [("authorization", "Bearer t0k")];
        assert_eq!(refusal(&g, &req("GET", "127.0.0.1", &auth)), None);
        // A foreign Host is refused before the token is looked at.
        assert_eq!(
            refusal(&g, &req("GET", "evil.example", &auth)),
            Some("misdirected")
        );
        assert!(!format!("{g:?}").contains("t0k"));
    }
}
