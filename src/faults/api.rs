//! The embedded Toxiproxy-compatible HTTP API (Toxiproxy 2.x): the same routes, JSON
//! shapes and status codes, over the proxy engine. Clients written for Toxiproxy (the
//! toxiproxy_rust crate among them) drive it unchanged.

use std::convert::Infallible;
use std::sync::Arc;

use hyper::body::HttpBody;
use hyper::server::conn::Http;
use hyper::service::service_fn;
use hyper::{Body, Method, Request, Response, StatusCode};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::proxy::{EngineError, Registry};
use super::toxics::{Stream, Toxic, ToxicKind};

/// The Toxiproxy version whose API this one follows.
pub const TOXIPROXY_VERSION: &str = "2.12.0";

/// Serves the API on `listener` until `shutdown` fires.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else { continue };
        let registry = registry.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let registry = registry.clone();
                async move { Ok::<_, Infallible>(handle(request, &registry).await) }
            });
            let connection = Http::new()
                .http1_keep_alive(true)
                .serve_connection(stream, service);
            tokio::select! {
                () = shutdown.cancelled() => {}
                _ = connection => {}
            }
        });
    }
}

/// The largest request body the API reads: a populate of a few hundred proxies is a few
/// tens of kilobytes; a body larger than this is refused with 413 before it is buffered.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Reads a request body of at most [`MAX_BODY_BYTES`], chunk by chunk: a client that
/// announces or sends more gets 413 and the server stays up.
async fn read_body(mut body: Body) -> Result<Vec<u8>, (u16, String)> {
    let too_large = || {
        (
            413,
            format!("request body larger than {MAX_BODY_BYTES} bytes"),
        )
    };
    if body.size_hint().lower() > MAX_BODY_BYTES as u64 {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| (400, e.to_string()))?;
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Answers one request.
pub async fn handle(request: Request<Body>, registry: &Registry) -> Response<Body> {
    let method = request.method().clone();
    let path: Vec<String> = request
        .uri()
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let body = match read_body(request.into_body()).await {
        Ok(bytes) => bytes,
        Err((status, message)) => return error(status, &message),
    };
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    let result = match (&method, segments.as_slice()) {
        (&Method::GET, ["version"]) => Ok((200, json!({ "version": TOXIPROXY_VERSION }))),
        (&Method::POST, ["reset"]) => registry.reset().await.map(|()| (204, Value::Null)),
        (&Method::GET, ["proxies"]) => {
            let all: Map<String, Value> = registry
                .list()
                .await
                .into_iter()
                .map(|p| (p.name.clone(), p.to_json()))
                .collect();
            Ok((200, Value::Object(all)))
        }
        (&Method::POST, ["proxies"]) => create_proxy(registry, &body).await,
        (&Method::POST, ["populate"]) => populate(registry, &body).await,
        (&Method::GET, ["proxies", name]) => registry.get(name).await.map(|p| (200, p.to_json())),
        (&Method::POST, ["proxies", name]) => update_proxy(registry, name, &body).await,
        (&Method::DELETE, ["proxies", name]) => {
            registry.delete(name).await.map(|()| (204, Value::Null))
        }
        (&Method::GET, ["proxies", name, "toxics"]) => registry
            .toxics(name)
            .await
            .map(|list| (200, Value::Array(list.iter().map(Toxic::to_json).collect()))),
        (&Method::POST, ["proxies", name, "toxics"]) => create_toxic(registry, name, &body).await,
        (&Method::GET, ["proxies", name, "toxics", toxic]) => registry
            .toxics(name)
            .await
            .and_then(|list| {
                list.into_iter()
                    .find(|t| t.name == *toxic)
                    .ok_or(EngineError::ToxicNotFound)
            })
            .map(|t| (200, t.to_json())),
        (&Method::POST, ["proxies", name, "toxics", toxic]) => {
            update_toxic(registry, name, toxic, &body).await
        }
        (&Method::DELETE, ["proxies", name, "toxics", toxic]) => registry
            .remove_toxic(name, toxic)
            .await
            .map(|()| (204, Value::Null)),
        _ => return error(404, "not found"),
    };
    match result {
        Ok((status, value)) => respond(status, &value),
        Err(e) => error(e.status(), &e.to_string()),
    }
}

fn parse(body: &[u8]) -> Result<Value, EngineError> {
    if body.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(body)
        .map_err(|e| EngineError::BadRequest(format!("bad request body: {e}")))
}

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value.get(field).and_then(Value::as_str).unwrap_or("")
}

async fn create_proxy(registry: &Registry, body: &[u8]) -> Result<(u16, Value), EngineError> {
    let v = parse(body)?;
    let enabled = v.get("enabled").and_then(Value::as_bool).unwrap_or(true);
    let listen = match text(&v, "listen") {
        "" => "127.0.0.1:0",
        listen => listen,
    };
    registry
        .create(text(&v, "name"), listen, text(&v, "upstream"), enabled)
        .await
        .map(|p| (201, p.to_json()))
}

async fn populate(registry: &Registry, body: &[u8]) -> Result<(u16, Value), EngineError> {
    let v = parse(body)?;
    let list = match v {
        Value::Array(list) => list,
        Value::Object(ref object) if object.contains_key("proxies") => {
            object["proxies"].as_array().cloned().unwrap_or_default()
        }
        _ => return Err(EngineError::BadRequest("expected a list of proxies".into())),
    };
    let mut wanted = Vec::new();
    for proxy in &list {
        let (name, upstream) = (text(proxy, "name"), text(proxy, "upstream"));
        if name.is_empty() || upstream.is_empty() {
            return Err(EngineError::BadRequest(
                "missing required field: name or upstream".into(),
            ));
        }
        let listen = match text(proxy, "listen") {
            "" => "127.0.0.1:0",
            listen => listen,
        };
        wanted.push((
            name.to_string(),
            listen.to_string(),
            upstream.to_string(),
            proxy
                .get("enabled")
                .and_then(Value::as_bool)
                .unwrap_or(true),
        ));
    }
    let made = registry.populate(&wanted).await?;
    Ok((
        201,
        json!({ "proxies": made.iter().map(|p| p.to_json()).collect::<Vec<_>>() }),
    ))
}

async fn update_proxy(
    registry: &Registry,
    name: &str,
    body: &[u8],
) -> Result<(u16, Value), EngineError> {
    let v = parse(body)?;
    let enabled = v.get("enabled").and_then(Value::as_bool);
    let listen = v.get("listen").and_then(Value::as_str);
    let upstream = v.get("upstream").and_then(Value::as_str);
    registry
        .update(name, enabled, listen, upstream)
        .await
        .map(|p| (200, p.to_json()))
}

fn stream_of(value: &Value) -> Result<Stream, EngineError> {
    match value
        .get("stream")
        .and_then(Value::as_str)
        .unwrap_or("downstream")
    {
        "downstream" | "" => Ok(Stream::Downstream),
        "upstream" => Ok(Stream::Upstream),
        other => Err(EngineError::BadRequest(format!(
            "stream was invalid: {other}"
        ))),
    }
}

fn toxicity_of(value: &Value) -> f64 {
    value.get("toxicity").and_then(Value::as_f64).unwrap_or(1.0)
}

async fn create_toxic(
    registry: &Registry,
    proxy: &str,
    body: &[u8],
) -> Result<(u16, Value), EngineError> {
    let v = parse(body)?;
    let type_name = text(&v, "type");
    let attributes = v
        .get("attributes")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let kind = ToxicKind::from_parts(type_name, &attributes)
        .map_err(|e| EngineError::BadRequest(e.to_string()))?;
    let stream = stream_of(&v)?;
    let name = match text(&v, "name") {
        "" => format!("{}_{}", kind.type_name(), stream.as_str()),
        name => name.to_string(),
    };
    registry.get(proxy).await?;
    let toxic = Toxic {
        name,
        kind,
        stream,
        toxicity: toxicity_of(&v),
    };
    registry
        .add_toxic(proxy, toxic)
        .await
        .map(|t| (200, t.to_json()))
}

async fn update_toxic(
    registry: &Registry,
    proxy: &str,
    name: &str,
    body: &[u8],
) -> Result<(u16, Value), EngineError> {
    let v = parse(body)?;
    let current = registry
        .toxics(proxy)
        .await?
        .into_iter()
        .find(|t| t.name == name)
        .ok_or(EngineError::ToxicNotFound)?;
    let mut attributes: Map<String, Value> = current
        .kind
        .attributes()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into()))
        .collect();
    if let Some(changes) = v.get("attributes").and_then(Value::as_object) {
        attributes.extend(changes.clone());
    }
    let kind = ToxicKind::from_parts(current.kind.type_name(), &attributes)
        .map_err(|e| EngineError::BadRequest(e.to_string()))?;
    let toxicity = v
        .get("toxicity")
        .and_then(Value::as_f64)
        .unwrap_or(current.toxicity);
    registry
        .update_toxic(proxy, name, |t| {
            t.kind = kind;
            t.toxicity = toxicity;
        })
        .await
        .map(|t| (200, t.to_json()))
}

fn respond(status: u16, value: &Value) -> Response<Body> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status == StatusCode::NO_CONTENT {
        return Response::builder()
            .status(status)
            .body(Body::empty())
            .expect("a valid response");
    }
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(Body::from(value.to_string()))
        .expect("a valid response")
}

fn error(status: u16, message: &str) -> Response<Body> {
    respond(status, &json!({ "error": message, "status": status }))
}
