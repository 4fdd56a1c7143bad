//! Passwords that never reach a message, a log line or a file: every
//! `scheme://user:password@` in a text has its password replaced by `****`. Broker URIs
//! themselves live in [`crate::broker_uri`], which renders them through this module.

/// Replaces the password of every `scheme://user:password@host` in `text` with `****`.
/// Text without credentials comes back unchanged, so it is safe on any message. (A
/// password is hidden where it stands as a credential; it is not hunted for elsewhere:
/// `warren:warren` would otherwise hide the tool's own name in every message.)
pub fn redact(text: &str) -> String {
    redact_tokens(text, false, |c| {
        c.is_whitespace() || matches!(c, '"' | '\'' | '`')
    })
}

/// [`redact`] for a text that is one URI as a whole (a scenario's field, perhaps not a
/// valid URI): its user information ends at its last `@`, whatever comes before.
pub(crate) fn redact_uri(text: &str) -> String {
    redact_tokens(text, true, |_| false)
}

/// Masks the password of every `://user:password@` in `text`; a URI ends where `ends`
/// says, and its user information at the last `@` before that: a password may hold `/`,
/// `?`, `#` or `@` (where the URI is not valid anyway), and all of it is hidden.
/// With `whole`, the text is one URI: a `://` inside its user information is part of the
/// password, not the start of another URI.
fn redact_tokens(text: &str, whole: bool, ends: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme_end) = rest.find("://") {
        let authority_start = scheme_end + 3;
        out.push_str(&rest[..authority_start]);
        rest = &rest[authority_start..];
        let token_end = rest.find(&ends).unwrap_or(rest.len());
        let token = &rest[..token_end];
        // The user information is what comes before the token's last '@', unless a
        // nested "://" begins before it.
        let userinfo_end = token
            .rfind('@')
            .filter(|at| whole || !token[..*at].contains("://"));
        match userinfo_end {
            Some(at) => {
                let userinfo = &token[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":****");
                    }
                    None => out.push_str(userinfo),
                }
                rest = &rest[at..];
            }
            None => {
                // No credentials: copy up to a nested "://", so a later URI is still seen.
                let copy = token.find("://").unwrap_or(token_end);
                out.push_str(&rest[..copy]);
                rest = &rest[copy..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests;
