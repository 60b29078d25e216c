//! The page and its files, compiled into the binary.

/// The page and its two files, compiled into the binary: nothing to install, nothing fetched.
const ASSETS: [(&str, &str, &str); 3] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../../assets/dashboard.html"),
    ),
    (
        "/dashboard.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/dashboard.css"),
    ),
    (
        "/dashboard.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/dashboard.js"),
    ),
];

/// The page's own files by path: content type and body. They hold no data, so they are served
/// without the admin token (a browser cannot send one when it opens a page); the page asks for
/// the token and sends it with every data and control request.
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    ASSETS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, content_type, body)| (*content_type, *body))
}

/// Headers for the page's files: only this origin's scripts, styles and data, and never inside
/// another site's frame (its buttons change the proxy).
pub const PAGE_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("cache-control", "no-store"),
];
