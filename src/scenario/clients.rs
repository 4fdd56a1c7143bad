//! Lowering of `[publishers]` and `[consumers]`: counts, confirm windows, rates, body
//! sizes, acknowledgement settings, and the combinations that could never work.

use std::time::Duration;

use super::checks::{heartbeat, nonzero, only_with, positive, whole};
use super::diagnostic::Checker;
use super::file::{ConsumersSection, PublishersSection, SizeEntry};
use super::plan::{AckMode, BodySize, ConsumerPlan, OnFailure, PublisherPlan};
use super::{MAX_BODY_SIZE, MIN_BODY_SIZE};

const MAX_CLIENTS: u64 = 10_000;

pub(super) fn publishers(c: &mut Checker<'_>, section: PublishersSection) -> PublisherPlan {
    let count = whole(
        c,
        "publishers.count",
        section.count,
        1,
        1,
        MAX_CLIENTS,
        "a number of publishers",
    ) as u32;
    let confirm = section.confirm.unwrap_or(true);
    let confirms = "confirm = true";
    only_with(
        c,
        "publishers.max_in_flight",
        &section.max_in_flight,
        confirm,
        confirms,
    );
    only_with(
        c,
        "publishers.confirm_timeout",
        &section.confirm_timeout,
        confirm,
        confirms,
    );
    let max_in_flight = whole(
        c,
        "publishers.max_in_flight",
        section.max_in_flight,
        256,
        1,
        65_535,
        "unconfirmed messages per publisher",
    ) as u32;
    let rate = positive(c, "publishers.rate", section.rate, "messages per second");
    let on_failure = match section.on_failure {
        Some(OnFailure::Republish) if !confirm => {
            c.error("publishers.on_failure", " = \"republish\": needs confirm = true; without confirms nothing tells which messages to publish again");
            OnFailure::Drop
        }
        Some(policy) => policy,
        None if confirm => OnFailure::Republish,
        None => OnFailure::Drop,
    };
    let connections = client_connections(
        c,
        "publishers",
        count,
        section.connections,
        section.channels_per_connection,
    );
    PublisherPlan {
        count,
        confirm,
        max_in_flight,
        persistent: section.persistent.unwrap_or(true),
        mandatory: section.mandatory.unwrap_or(true),
        rate,
        size: body_size(c, section.size),
        on_failure,
        connections,
        confirm_timeout: nonzero(c, "publishers.confirm_timeout", section.confirm_timeout)
            .unwrap_or(Duration::from_secs(10)),
        heartbeat: heartbeat(c, "publishers.heartbeat", section.heartbeat),
    }
}

pub(super) fn consumers(c: &mut Checker<'_>, section: ConsumersSection) -> ConsumerPlan {
    let count = whole(
        c,
        "consumers.count",
        section.count,
        1,
        1,
        MAX_CLIENTS,
        "a number of consumers",
    ) as u32;
    let ack = section.ack.unwrap_or(AckMode::Manual);
    only_with(
        c,
        "consumers.multiple_ack_every",
        &section.multiple_ack_every,
        ack == AckMode::Manual,
        "ack = \"manual\"",
    );
    let prefetch = whole(
        c,
        "consumers.prefetch",
        section.prefetch,
        100,
        0,
        65_535,
        "unacknowledged deliveries per consumer (0 = unlimited)",
    ) as u16;
    let multiple_ack_every = whole(
        c,
        "consumers.multiple_ack_every",
        section.multiple_ack_every,
        1,
        1,
        65_535,
        "deliveries per acknowledgement",
    ) as u32;
    if prefetch > 0 && multiple_ack_every > u32::from(prefetch) {
        c.error(
            "consumers.multiple_ack_every",
            format!(" = {multiple_ack_every}: more than prefetch = {prefetch}; the consumer would stop receiving before it ever acknowledges"),
        );
    }
    let crash_every = section.crash_every.map(|n| {
        whole(
            c,
            "consumers.crash_every",
            Some(n),
            1,
            1,
            u64::MAX,
            "deliveries between crashes",
        )
    });
    ConsumerPlan {
        count,
        ack,
        prefetch,
        multiple_ack_every,
        processing_delay: section.processing_delay.map(|d| d.0),
        crash_every,
        connections: client_connections(c, "consumers", count, section.connections, None),
        heartbeat: heartbeat(c, "consumers.heartbeat", section.heartbeat),
        stall_timeout: nonzero(c, "consumers.stall_timeout", section.stall_timeout)
            .unwrap_or(DEFAULT_STALL_TIMEOUT),
    }
}

/// How long a consumer may receive nothing while its queue holds ready messages.
const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections shared by `count` clients (one channel each): one per client by default.
fn client_connections(
    c: &mut Checker<'_>,
    section: &str,
    count: u32,
    connections: Option<i64>,
    channels_per_connection: Option<i64>,
) -> u32 {
    let path = format!("{section}.connections");
    let given = connections.map(|n| {
        whole(
            c,
            &path,
            Some(n),
            u64::from(count),
            1,
            u64::from(count),
            &format!("a number of connections shared by the {count} {section} (one channel each)"),
        ) as u32
    });
    let Some(per_connection) = channels_per_connection else {
        return given.unwrap_or(count);
    };
    let cpc_path = format!("{section}.channels_per_connection");
    let per_connection = whole(
        c,
        &cpc_path,
        Some(per_connection),
        1,
        1,
        u64::from(count),
        &format!("channels per connection, at most count = {count}"),
    ) as u32;
    let derived = count.div_ceil(per_connection);
    match given {
        Some(n) if n * per_connection != count => {
            c.error(&cpc_path, format!(" = {per_connection}: with connections = {n} that makes {} channels, but count = {count} (one channel per client); give one of the two", n * per_connection));
            n
        }
        Some(n) => n,
        None => derived,
    }
}

fn body_size(c: &mut Checker<'_>, size: Option<SizeEntry>) -> BodySize {
    let allowed = format!(
        "from {MIN_BODY_SIZE} bytes (warren's message header) to {MAX_BODY_SIZE} bytes (RabbitMQ's default max_message_size)"
    );
    let check = |c: &mut Checker<'_>, path: &str, bytes: u64| {
        if !(MIN_BODY_SIZE..=MAX_BODY_SIZE).contains(&bytes) {
            c.error(path, format!(" = {bytes}: expected a body size {allowed}"));
        }
        bytes.clamp(MIN_BODY_SIZE, MAX_BODY_SIZE)
    };
    match size {
        None => BodySize::Fixed(1024),
        Some(SizeEntry::Fixed(bytes)) => BodySize::Fixed(check(c, "publishers.size", bytes.0)),
        Some(SizeEntry::Range { min, max }) => {
            let min = check(c, "publishers.size.min", min.0);
            let max = check(c, "publishers.size.max", max.0);
            if min > max {
                c.error(
                    "publishers.size",
                    format!("min = {min} is larger than max = {max}"),
                );
            }
            BodySize::Uniform {
                min,
                max: max.max(min),
            }
        }
    }
}
