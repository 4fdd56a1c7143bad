//! One proxied connection: a client socket, the upstream socket, and per direction a
//! reader that timestamps chunks as they arrive and a writer that applies the toxics in
//! effect. Toxics added or removed while the connection lives take effect at once; a
//! removed toxic never drops data it was holding.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::precise_timer::PreciseTimer;
use crate::toxiproxy::toxics::{
    Dice, Stream, Toxic, ToxicKind, bandwidth, latency, limit_data, slicer,
};

/// The toxics of a proxy, as every link sees them.
pub type ToxicList = Arc<Vec<Toxic>>;

const READ_BUFFER: usize = 32 * 1024;
/// Chunks read but not yet written, per direction (backpressure beyond this).
const IN_FLIGHT_CHUNKS: usize = 256;

struct Chunk {
    data: Vec<u8>,
    arrived: Instant,
}

/// Everything a link shares between its tasks.
struct Shared {
    /// Identifies the link for toxicity draws.
    seed: u64,
    toxics: watch::Receiver<ToxicList>,
    /// Cancelled to close the link.
    closing: CancellationToken,
    /// Set to close with a TCP reset rather than a normal close.
    reset: AtomicBool,
}

impl Shared {
    /// Whether `toxic` affects this link: drawn once per (link, toxic name), the same in
    /// every task of the link.
    fn applies(&self, toxic: &Toxic) -> bool {
        if toxic.toxicity >= 1.0 {
            return true;
        }
        let mut hasher = DefaultHasher::new();
        toxic.name.hash(&mut hasher);
        Dice::new(self.seed ^ hasher.finish()).unit() < toxic.toxicity
    }

    /// The toxics that affect direction `stream` of this link now.
    fn active(&self, stream: Stream) -> Vec<Toxic> {
        self.toxics
            .borrow()
            .iter()
            .filter(|t| t.stream == stream && self.applies(t))
            .cloned()
            .collect()
    }
}

/// Proxies one accepted client to `upstream` until either side closes or `closing` fires.
pub async fn serve(
    client: TcpStream,
    upstream: String,
    toxics: watch::Receiver<ToxicList>,
    closing: CancellationToken,
    seed: u64,
) {
    let server = tokio::select! {
        () = closing.cancelled() => return,
        server = TcpStream::connect(&upstream) => match server {
            Ok(server) => server,
            Err(_) => return,
        },
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let shared = Arc::new(Shared {
        seed,
        toxics,
        closing: closing.child_token(),
        reset: AtomicBool::new(false),
    });
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let (up_tx, up_rx) = mpsc::channel(IN_FLIGHT_CHUNKS);
    let (down_tx, down_rx) = mpsc::channel(IN_FLIGHT_CHUNKS);
    let ((), (), client_write, server_write, ()) = tokio::join!(
        read(&client_read, up_tx, &shared),
        read(&server_read, down_tx, &shared),
        write(client_write, down_rx, Stream::Downstream, &shared),
        write(server_write, up_rx, Stream::Upstream, &shared),
        watch_link(&shared),
    );
    // Dropping a write half sends FIN first; a reset must close the whole socket instead.
    let reset = shared.reset.load(Ordering::Relaxed);
    for (read, write) in [(client_read, client_write), (server_read, server_write)] {
        if let Ok(socket) = read.reunite(write) {
            if reset {
                let _ = socket.set_zero_linger();
            }
        }
    }
}

/// Reads chunks as they come, stamped with their arrival time.
async fn read(from: &OwnedReadHalf, to: mpsc::Sender<Chunk>, shared: &Shared) {
    let mut buffer = vec![0u8; READ_BUFFER];
    loop {
        let read = tokio::select! {
            () = shared.closing.cancelled() => return,
            read = read_some(from, &mut buffer) => read,
        };
        let Some(n) = read else { return };
        let chunk = Chunk {
            data: buffer[..n].to_vec(),
            arrived: Instant::now(),
        };
        if to.send(chunk).await.is_err() {
            return;
        }
    }
}

/// One read from a shared read half (`None` at end of stream or on error).
async fn read_some(from: &OwnedReadHalf, buffer: &mut [u8]) -> Option<usize> {
    loop {
        from.readable().await.ok()?;
        match from.try_read(buffer) {
            Ok(0) => return None,
            Ok(n) => return Some(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return None,
        }
    }
}

/// Writes chunks in arrival order, applying the toxics of `stream`; closes the link when done.
async fn write(
    mut to: OwnedWriteHalf,
    mut from: mpsc::Receiver<Chunk>,
    stream: Stream,
    shared: &Shared,
) -> OwnedWriteHalf {
    let mut toxics = shared.toxics.clone();
    let mut dice = Dice::new(shared.seed ^ stream as u64 ^ 0x5eed);
    let mut timer = PreciseTimer::new();
    // Bytes passed since the current limit_data toxic took effect.
    let mut limit: Option<(String, u64)> = None;
    loop {
        let chunk = tokio::select! {
            biased;
            () = shared.closing.cancelled() => return to,
            chunk = from.recv() => chunk,
        };
        let Some(chunk) = chunk else { break };
        let mut active = shared.active(stream);
        if active
            .iter()
            .any(|t| matches!(t.kind, ToxicKind::Timeout { .. }))
        {
            continue; // blackholed: dropped
        }
        if let Some(ToxicKind::Latency {
            latency_ms,
            jitter_ms,
        }) = active
            .iter()
            .map(|t| t.kind)
            .find(|k| matches!(k, ToxicKind::Latency { .. }))
        {
            let due = chunk.arrived + latency::delay(latency_ms, jitter_ms, &mut dice);
            loop {
                tokio::select! {
                    () = shared.closing.cancelled() => return to,
                    () = timer.sleep_until(due.into_std()) => break,
                    changed = toxics.changed() => {
                        if changed.is_err() || !shared.active(stream).iter().any(|t| matches!(t.kind, ToxicKind::Latency { .. })) {
                            break;
                        }
                    }
                }
            }
            active = shared.active(stream);
        }
        let mut data: &[u8] = &chunk.data;
        let mut reached = false;
        if let Some(toxic) = active
            .iter()
            .find(|t| matches!(t.kind, ToxicKind::LimitData { .. }))
        {
            let ToxicKind::LimitData { bytes } = toxic.kind else {
                unreachable!()
            };
            let passed = match &mut limit {
                Some((name, passed)) if *name == toxic.name => passed,
                _ => &mut limit.insert((toxic.name.clone(), 0)).1,
            };
            let (allowed, limit_reached) = limit_data::allowance(bytes, *passed, data.len());
            *passed += allowed as u64;
            data = &data[..allowed];
            reached = limit_reached;
        }
        if !send(&mut to, data, stream, shared, &mut dice, &mut timer).await {
            return to;
        }
        if reached {
            shared.closing.cancel();
            return to;
        }
    }
    if shared.closing.is_cancelled() {
        // The link is being closed (down, reset, limit): no orderly shutdown of this side.
        return to;
    }
    // The source closed: slow_close holds the close back.
    if let Some(ToxicKind::SlowClose { delay_ms }) = shared
        .active(stream)
        .iter()
        .map(|t| t.kind)
        .find(|k| matches!(k, ToxicKind::SlowClose { .. }))
    {
        tokio::select! {
            () = shared.closing.cancelled() => {}
            () = tokio::time::sleep(Duration::from_millis(delay_ms)) => {}
        }
    }
    let _ = to.shutdown().await;
    shared.closing.cancel();
    to
}

/// Writes `data`, sliced (slicer) and paced (bandwidth) as the toxics in effect say.
async fn send(
    to: &mut OwnedWriteHalf,
    data: &[u8],
    stream: Stream,
    shared: &Shared,
    dice: &mut Dice,
    timer: &mut PreciseTimer,
) -> bool {
    let mut offset = 0;
    while offset < data.len() {
        let active = shared.active(stream);
        let slicing = active.iter().find_map(|t| match t.kind {
            ToxicKind::Slicer {
                average_size,
                size_variation,
                delay_us,
            } => Some((average_size, size_variation, delay_us)),
            _ => None,
        });
        let rate = active.iter().find_map(|t| match t.kind {
            ToxicKind::Bandwidth { rate_kbps } if rate_kbps > 0 => Some(rate_kbps),
            _ => None,
        });
        let mut size = data.len() - offset;
        let mut pause = Duration::ZERO;
        if let Some((average, variation, delay_us)) = slicing {
            size = slicer::pieces(size, average, variation, dice)[0];
            pause = Duration::from_micros(delay_us);
        }
        if let Some(rate) = rate {
            size = size.min(bandwidth::piece(rate));
            pause = pause.max(bandwidth::time_for(size, rate));
        }
        if to.write_all(&data[offset..offset + size]).await.is_err() {
            shared.closing.cancel();
            return false;
        }
        offset += size;
        if !pause.is_zero() && offset < data.len() + usize::from(rate.is_some()) {
            tokio::select! {
                () = shared.closing.cancelled() => return false,
                () = timer.sleep_until(std::time::Instant::now() + pause) => {}
            }
        }
    }
    true
}

/// Link-wide timers: reset_peer resets the connection, and a timeout toxic with a timeout
/// closes it, that long after the toxic took effect on this link.
async fn watch_link(shared: &Shared) {
    let mut toxics = shared.toxics.clone();
    let mut seen: Vec<(String, Instant)> = Vec::new();
    loop {
        let now = Instant::now();
        let current: Vec<Toxic> = shared
            .toxics
            .borrow()
            .iter()
            .filter(|t| shared.applies(t))
            .cloned()
            .collect();
        seen.retain(|(name, _)| current.iter().any(|t| &t.name == name));
        let mut deadline: Option<(Instant, bool)> = None;
        for toxic in &current {
            let (timeout_ms, reset) = match toxic.kind {
                ToxicKind::ResetPeer { timeout_ms } => (timeout_ms, true),
                ToxicKind::Timeout { timeout_ms } if timeout_ms > 0 => (timeout_ms, false),
                _ => continue,
            };
            let since = match seen.iter().find(|(name, _)| name == &toxic.name) {
                Some((_, since)) => *since,
                None => {
                    seen.push((toxic.name.clone(), now));
                    now
                }
            };
            let at = since + Duration::from_millis(timeout_ms);
            if deadline.is_none_or(|(d, _)| at < d) {
                deadline = Some((at, reset));
            }
        }
        tokio::select! {
            () = shared.closing.cancelled() => return,
            changed = toxics.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = sleep_until(deadline.map(|(at, _)| at)) => {
                if deadline.is_some_and(|(_, reset)| reset) {
                    shared.reset.store(true, Ordering::Relaxed);
                }
                shared.closing.cancel();
                return;
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
