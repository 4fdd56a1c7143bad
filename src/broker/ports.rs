//! Free TCP ports on the loopback interface for private nodes (AMQP, distribution, epmd).

use std::net::{Ipv4Addr, TcpListener};

/// Asks the kernel for `count` distinct free ports. All are held open together and then
/// released, so the same port is never handed out twice in one call.
///
/// # Errors
/// The I/O error when the kernel has no port to give.
pub fn free_ports(count: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

/// True when nothing listens on `port` on loopback and it can be bound.
pub fn is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_handed_out_together_are_distinct_and_free() {
        let ports = free_ports(8).unwrap();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 8);
        assert!(ports.iter().all(|p| is_free(*p)));
    }
}
