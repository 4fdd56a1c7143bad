//! Inter-node links that can be cut: the Erlang distribution traffic of a managed cluster
//! put through proxies, so one node can be partitioned from the others while its clients
//! still reach it.
//!
//! Every node gets its own host name (`wn1`, `wn2`, ...) and its own view of the others'
//! addresses, given to its Erlang VM as an inetrc file (`ERL_INETRC`): node i finds node j
//! at 127.77.(i+1).(j+1), an address of the loopback network that nothing else uses. There,
//! warren listens twice: a proxy to node j's distribution port, and a stand-in for epmd
//! that answers "node j listens on the proxy's port". Cutting node k off is disabling every
//! proxy from and to k: the distribution connections close and new ones are refused, while
//! AMQP and rabbitmqctl (which resolve every host name to 127.0.0.1) are untouched.
//!
//! A proxy cannot listen on the node's own distribution port number: RabbitMQ checks at
//! boot that the port is free on every address, which a listener on 127.77.x.y would fail.
//! Hence the stand-in epmd, which hands out the proxy's port instead.

use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::toxiproxy::Registry;

/// A node's host name in a partitionable cluster.
pub fn host_name(index: usize) -> String {
    format!("wn{}", index + 1)
}

/// Where node `viewer` finds node `target`.
fn view_address(viewer: usize, target: usize) -> [u8; 4] {
    [127, 77, viewer as u8 + 1, target as u8 + 1]
}

fn dotted(address: [u8; 4]) -> String {
    format!(
        "{}.{}.{}.{}",
        address[0], address[1], address[2], address[3]
    )
}

/// The inetrc of node `viewer` among `nodes`: itself at 127.0.0.1, every other node at its
/// view address.
pub fn node_inetrc(viewer: usize, nodes: usize) -> String {
    let mut text = format!("{{host, {{127,0,0,1}}, [\"{}\"]}}.\n", host_name(viewer));
    for target in (0..nodes).filter(|t| *t != viewer) {
        let a = view_address(viewer, target);
        text.push_str(&format!(
            "{{host, {{{},{},{},{}}}, [\"{}\"]}}.\n",
            a[0],
            a[1],
            a[2],
            a[3],
            host_name(target)
        ));
    }
    text.push_str("{lookup, [file, native]}.\n");
    text
}

/// The inetrc of rabbitmqctl: every node at 127.0.0.1, straight to its real ports.
pub fn cli_inetrc(nodes: usize) -> String {
    let names: Vec<String> = (0..nodes)
        .map(|i| format!("\"{}\"", host_name(i)))
        .collect();
    format!(
        "{{host, {{127,0,0,1}}, [{}]}}.\n{{lookup, [file, native]}}.\n",
        names.join(", ")
    )
}

/// Writes `text` as the inetrc at `path`.
///
/// # Errors
/// The I/O error.
pub fn write_inetrc(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

/// What a partition needs to know of a node: its Erlang name (the part before `@`) and
/// distribution port.
#[derive(Debug, Clone)]
pub struct DistNode {
    pub alive_name: String,
    pub dist_port: u16,
}

/// The proxies and epmd stand-ins between the nodes of one cluster.
pub struct DistLinks {
    registry: Arc<Registry>,
    nodes: usize,
    answerers: Vec<JoinHandle<()>>,
}

/// Why the inter-node links could not be made.
#[derive(Debug, thiserror::Error)]
#[error("the inter-node links for partitions could not be made: {0}")]
pub struct DistLinkError(String);

impl DistLinks {
    /// Proxies and epmd stand-ins for every ordered pair of `nodes`; `epmd_port` is the port
    /// every Erlang VM of the cluster asks epmd on.
    ///
    /// # Errors
    /// [`DistLinkError`] when an address cannot be bound.
    pub async fn start(nodes: &[DistNode], epmd_port: u16) -> Result<Self, DistLinkError> {
        let registry = Registry::new();
        // Built up in place, so that on an error its Drop stops what was started.
        let mut links = Self {
            registry: registry.clone(),
            nodes: nodes.len(),
            answerers: Vec::new(),
        };
        for viewer in 0..nodes.len() {
            for (target, node) in nodes.iter().enumerate().filter(|(t, _)| *t != viewer) {
                let host = dotted(view_address(viewer, target));
                let proxy = registry
                    .create(
                        &proxy_name(viewer, target),
                        &format!("{host}:0"),
                        &format!("127.0.0.1:{}", node.dist_port),
                        true,
                    )
                    .await
                    .map_err(|e| DistLinkError(format!("proxy on {host}: {e:?}")))?;
                let port: u16 = proxy
                    .listen
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| DistLinkError(format!("proxy address {}", proxy.listen)))?;
                let listener = TcpListener::bind((host.as_str(), epmd_port))
                    .await
                    .map_err(|e| {
                        DistLinkError(format!("epmd stand-in on {host}:{epmd_port}: {e}"))
                    })?;
                links.answerers.push(tokio::spawn(answer_epmd(
                    listener,
                    node.alive_name.clone(),
                    port,
                    epmd_port,
                )));
            }
        }
        Ok(links)
    }

    /// Cuts node `index` off from every other node, or joins it again.
    pub async fn set_cut(&self, index: usize, cut: bool) {
        for other in (0..self.nodes).filter(|o| *o != index) {
            for name in [proxy_name(index, other), proxy_name(other, index)] {
                let _ = self.registry.update(&name, Some(!cut), None, None).await;
            }
        }
    }

    /// Closes every link.
    pub async fn stop(&mut self) {
        for answerer in self.answerers.drain(..) {
            answerer.abort();
        }
        self.registry.clear().await;
    }
}

impl Drop for DistLinks {
    fn drop(&mut self) {
        for answerer in &self.answerers {
            answerer.abort();
        }
    }
}

fn proxy_name(viewer: usize, target: usize) -> String {
    format!("dist-{viewer}-{target}")
}

/// epmd's request for a node's port (PORT_PLEASE2_REQ), its answer (PORT2_RESP), and the
/// request for every registered name (NAMES_REQ).
const PORT_PLEASE2_REQ: u8 = 122;
const PORT2_RESP: u8 = 119;
const NAMES_REQ: u8 = 110;

/// Serves epmd's lookup for one node: `name` listens on `port`.
async fn answer_epmd(listener: TcpListener, name: String, port: u16, epmd_port: u16) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let name = name.clone();
        tokio::spawn(async move {
            let _ = answer_one(stream, &name, port, epmd_port).await;
        });
    }
}

/// Answers one epmd request (epmd closes the connection after each).
async fn answer_one(
    mut stream: TcpStream,
    name: &str,
    port: u16,
    epmd_port: u16,
) -> std::io::Result<()> {
    let length = stream.read_u16().await? as usize;
    let mut request = vec![0; length];
    stream.read_exact(&mut request).await?;
    let answer = epmd_answer(&request, name, port, epmd_port);
    stream.write_all(&answer).await?;
    stream.shutdown().await
}

/// epmd's answer to `request` from a stand-in that knows one node, `name` at `port`.
pub fn epmd_answer(request: &[u8], name: &str, port: u16, epmd_port: u16) -> Vec<u8> {
    match request.split_first() {
        Some((&PORT_PLEASE2_REQ, asked)) if asked == name.as_bytes() => {
            let mut answer = vec![PORT2_RESP, 0];
            answer.extend_from_slice(&port.to_be_bytes());
            answer.push(77); // a normal Erlang node
            answer.push(0); // TCP over IPv4
            answer.extend_from_slice(&6u16.to_be_bytes()); // highest distribution version
            answer.extend_from_slice(&5u16.to_be_bytes()); // lowest
            answer.extend_from_slice(&(name.len() as u16).to_be_bytes());
            answer.extend_from_slice(name.as_bytes());
            answer.extend_from_slice(&0u16.to_be_bytes()); // no extra
            answer
        }
        Some((&PORT_PLEASE2_REQ, _)) => vec![PORT2_RESP, 1],
        Some((&NAMES_REQ, _)) => {
            let mut answer = u32::from(epmd_port).to_be_bytes().to_vec();
            answer.extend_from_slice(format!("name {name} at port {port}\n").as_bytes());
            answer
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stand_in_answers_for_its_node_only() {
        let mut request = vec![PORT_PLEASE2_REQ];
        request.extend_from_slice(b"warren-1");
        let answer = epmd_answer(&request, "warren-1", 40123, 4369);
        assert_eq!(&answer[..4], &[PORT2_RESP, 0, 0x9c, 0xbb]);
        assert_eq!(&answer[10..12], &[0, 8]);
        assert_eq!(&answer[12..20], b"warren-1");
        assert_eq!(answer.len(), 22);
        let mut other = vec![PORT_PLEASE2_REQ];
        other.extend_from_slice(b"warren-2");
        assert_eq!(
            epmd_answer(&other, "warren-1", 40123, 4369),
            vec![PORT2_RESP, 1]
        );
    }

    #[test]
    fn each_node_sees_the_others_at_its_own_addresses() {
        let text = node_inetrc(1, 3);
        assert!(text.contains("{host, {127,0,0,1}, [\"wn2\"]}."), "{text}");
        assert!(text.contains("{host, {127,77,2,1}, [\"wn1\"]}."), "{text}");
        assert!(text.contains("{host, {127,77,2,3}, [\"wn3\"]}."), "{text}");
        assert_eq!(
            cli_inetrc(2),
            "{host, {127,0,0,1}, [\"wn1\", \"wn2\"]}.\n{lookup, [file, native]}.\n"
        );
    }
}
