use proptest::prelude::*;

use super::*;
use crate::redact::redact;

/// Regression: the scan stopped at `/`, `?`, `#`, so a password holding one was shown.
#[test]
fn a_password_with_reserved_characters_is_hidden_whole() {
    let error = "amqp://u:pa://ss@host"
        .parse::<BrokerUri>()
        .unwrap_err()
        .to_string();
    assert!(!error.contains("pa") && !error.contains("ss@"), "{error}");
    for text in [
        "amqp://u:pa/ss@host:5672/%2f",
        "amqp://u:pa?ss@host",
        "amqp://u:pa#ss@host",
        "amqp://u:p@ss@host",
    ] {
        let shown = redact(text);
        assert!(shown.starts_with("amqp://u:****@"), "{text} -> {shown}");
        assert!(
            !shown.contains("pa") && !shown.contains("ss@"),
            "{text} -> {shown}"
        );
        let refused = text.parse::<BrokerUri>().err().map(|e| e.to_string());
        if let Some(message) = refused {
            assert!(!message.contains("ss@"), "{message}");
        }
    }
}

#[test]
fn a_user_named_like_the_password_keeps_its_name() {
    let uri: BrokerUri = "amqp://warren:warren@127.0.0.1:5672/%2f".parse().unwrap();
    assert_eq!(uri.redacted(), "amqp://warren:****@127.0.0.1:5672/%2f");
    assert_eq!(
        redact("warren: cannot reach amqp://warren:warren@h"),
        "warren: cannot reach amqp://warren:****@h"
    );
}

#[test]
fn uris_show_redacted_and_connect_with_the_real_text() {
    let uri: BrokerUri = "amqp://guest:hunter2@127.0.0.1:5673/%2f".parse().unwrap();
    assert_eq!(uri.to_string(), "amqp://guest:****@127.0.0.1:5673/%2f");
    assert!(!format!("{uri:?}").contains("hunter2"));
    assert!(!serde_json::to_string(&uri).unwrap().contains("hunter2"));
    assert!(uri.expose().contains("hunter2"));
    assert_eq!(uri.port(), 5673);
    assert_eq!(uri.password(), "hunter2");
    assert_eq!(uri.vhost(), "/");
    let bare: BrokerUri = "amqp://rabbit".parse().unwrap();
    assert_eq!((bare.username(), bare.password()), ("guest", "guest"));
    assert_eq!((bare.vhost(), bare.port()), ("/", 5672));
    let tls: BrokerUri = "amqps://u:p@rabbit/prod".parse().unwrap();
    assert_eq!(
        (tls.vhost(), tls.port(), tls.is_tls()),
        ("prod", 5671, true)
    );
    let empty: BrokerUri = "amqp://rabbit/".parse().unwrap();
    assert_eq!(empty.vhost(), "");
}

/// Regression: `[fd00::5]` read as `localhost`, so warren tested the local broker.
#[test]
fn an_ipv6_literal_is_that_address() {
    let uri: BrokerUri = "amqp://user:pass@[fd00::5]:5672/".parse().unwrap();
    assert_eq!(uri.host(), "fd00::5");
    assert_eq!(uri.address(), "[fd00::5]:5672");
    let loopback: BrokerUri = "amqp://[::1]".parse().unwrap();
    assert_eq!(loopback.address(), "[::1]:5672");
    let proxied = loopback.with_address("::1", 25672).unwrap();
    assert_eq!(proxied.address(), "[::1]:25672");
    let v4 = uri.with_address("127.0.0.1", 1).unwrap();
    assert_eq!((v4.host(), v4.port()), ("127.0.0.1", 1));
    assert_eq!(v4.password(), "pass");
}

#[test]
fn what_warren_cannot_follow_is_refused() {
    for (text, reason) in [
        ("http://guest:hunter2@host", "scheme amqp or amqps"),
        ("amqp://guest:hunter2@host/a/b", "one path segment"),
        (
            "amqp://guest:hunter2@host/?heartbeat=5",
            "does not read settings",
        ),
        ("amqp://guest:hunter2@:5672", "host"),
        ("amqp://guest:hunter2@[fd00::5", "not a valid URI"),
    ] {
        let err = text.parse::<BrokerUri>().unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains(reason), "{text}: {err}");
    }
}

#[test]
fn a_uri_can_point_at_a_proxy_and_keep_everything_else() {
    let uri: BrokerUri = "amqp://u:p@rabbit:5672/vh".parse().unwrap();
    let proxied = uri.with_address("127.0.0.1", 25672).unwrap();
    assert_eq!(proxied.expose(), "amqp://u:p@127.0.0.1:25672/vh");
    assert_eq!(proxied.vhost(), "vh");
    // A certificate names the broker, not the proxy: the TLS name stays the broker's.
    assert_eq!(proxied.origin_host(), "rabbit");
    assert_eq!(proxied.host(), "127.0.0.1");
    assert_eq!(uri.origin_host(), "rabbit");
    // Regression: an empty client_host panicked here after the broker had started.
    for bad in ["", "[::1]", "a b", "-x", "x..y"] {
        assert!(uri.with_address(bad, 1).is_err(), "{bad:?}");
    }
    assert!(is_host("rabbit-1.example") && is_host("::1") && is_host("10.0.0.1"));
}

/// User names and passwords of any characters (reserved ones, `%`, spaces, non-ASCII):
/// written percent-encoded, they parse back exactly; written raw or encoded, no
/// rendering of the URI or of a message quoting it shows the password in either form.
/// (A user named like the password keeps its name: `warren:warren` shows `warren:****`.)
fn secret() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-zA-Z0-9:/?#\\[\\]@!$&'()*+,;=%. ~é-]{8,24}").unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_rendering_shows_a_password(user in "[a-zA-Z0-9._%!-]{1,12}", password in secret()) {
        use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
        let encoded_user = utf8_percent_encode(&user, NON_ALPHANUMERIC).to_string();
        let encoded = utf8_percent_encode(&password, NON_ALPHANUMERIC).to_string();
        let text = format!("amqp://{encoded_user}:{encoded}@rabbit.example:5672/%2f");
        let uri: BrokerUri = text.parse().unwrap();
        prop_assert_eq!(uri.password(), password.as_str());
        prop_assert_eq!(uri.username(), user.as_str());
        let shown = [
            uri.to_string(),
            format!("{uri:?}"),
            serde_json::to_string(&uri).unwrap(),
            redact(&format!("cannot connect to {} (\"{}\")", uri.expose(), uri.expose())),
        ];
        for rendering in &shown {
            prop_assert!(!rendering.contains(password.as_str()), "{}", rendering);
            prop_assert!(!rendering.contains(encoded.as_str()), "{}", rendering);
        }
        // Written raw, the URI may be refused or read otherwise: never shown either way.
        let raw = format!("amqp://{user}:{password}@rabbit.example/%2f");
        let rendering = match raw.parse::<BrokerUri>() {
            Ok(uri) => uri.to_string(),
            Err(e) => e.to_string(),
        };
        prop_assert!(!rendering.contains(password.as_str()), "{}", rendering);
    }
}
