//! warren: what the crate's own tests share: the RabbitMQ node they connect to.

/// warren: the port of the RabbitMQ node the crate's own tests connect to, from
/// `AMQPRS_TEST_PORT`: warren's scripts/test.sh starts a private node on a free port and
/// gives it upstream's test account (user `user`, password `bitnami`).
#[cfg(all(test, feature = "broker-tests"))]
pub fn test_port() -> u16 {
    std::env::var("AMQPRS_TEST_PORT")
        .ok()
        .and_then(|port| port.parse().ok())
        .expect(
            "AMQPRS_TEST_PORT names no port: the crate's tests need a RabbitMQ node with the \
             user 'user' (password 'bitnami'); warren's scripts/test.sh starts one",
        )
}

/// warren: `localhost:<test_port>`.
#[cfg(all(test, feature = "broker-tests"))]
pub fn test_address() -> String {
    format!("localhost:{}", test_port())
}
