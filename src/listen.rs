//! The listen address of warren's own servers (the live metrics endpoint), as a scenario's
//! `report.metrics_listen` and the command line's `--metrics-listen` write it.

use std::net::SocketAddr;

/// Reads a listen address: `IP:PORT` (`[::1]:9464` for IPv6), `localhost:PORT`
/// (127.0.0.1), or `:PORT` (every interface). Port 0 picks a free port.
///
/// # Errors
/// What was expected, for the caller to put after the field's name.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let expected = || {
        format!(
            "{text:?}: expected an address and port, like \"127.0.0.1:9464\", \"localhost:9464\", \"[::1]:9464\" or \":9464\" (every interface)"
        )
    };
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(expected)?;
    let port: u16 = port.parse().map_err(|_| expected())?;
    let ip = match host {
        "" => std::net::Ipv4Addr::UNSPECIFIED,
        "localhost" => std::net::Ipv4Addr::LOCALHOST,
        _ => return Err(expected()),
    };
    Ok(SocketAddr::from((ip, port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_in_the_forms_people_write() {
        let ok = |text: &str, expected: &str| {
            assert_eq!(parse_listen(text), Ok(expected.parse().unwrap()), "{text}");
        };
        ok("127.0.0.1:9464", "127.0.0.1:9464");
        ok("[::1]:9464", "[::1]:9464");
        ok("localhost:9464", "127.0.0.1:9464");
        ok(":9464", "0.0.0.0:9464");
        ok("0.0.0.0:0", "0.0.0.0:0");
        for bad in [
            "9464",
            "example.com:9464",
            "127.0.0.1:99999",
            "127.0.0.1:",
            "",
        ] {
            let error = parse_listen(bad).expect_err(bad);
            assert!(error.contains("expected an address and port"), "{error}");
        }
    }
}
