use super::*;

#[test]
fn passwords_are_replaced_everywhere() {
    assert_eq!(
        redact("amqp://guest:s3cr3t@127.0.0.1:5672/%2f"),
        "amqp://guest:****@127.0.0.1:5672/%2f"
    );
    assert_eq!(
        redact("failed amqps://u:p%40ss@h:1 and amqp://x:y@z"),
        "failed amqps://u:****@h:1 and amqp://x:****@z"
    );
    assert_eq!(redact("amqp://host:5672/"), "amqp://host:5672/");
    assert_eq!(redact("amqp://user@host"), "amqp://user@host");
    assert_eq!(redact("no uri here"), "no uri here");
    assert_eq!(
        redact("see http://h/a?b=amqp://u:secret9@h"),
        "see http://h/a?b=amqp://u:****@h"
    );
}
