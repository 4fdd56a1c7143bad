//! The embedded Toxiproxy-compatible HTTP API (Toxiproxy 2.x): the same routes, JSON
//! shapes and status codes, over the proxy engine. Clients written for Toxiproxy (the
//! toxiproxy_rust crate among them) drive it unchanged.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::proxy::{EngineError, Registry};
use super::toxics::{Stream, Toxic, ToxicKind};

/// The Toxiproxy version whose API this one follows.
pub const TOXIPROXY_VERSION: &str = "2.12.0";

/// The largest request body the API reads: a populate of a few hundred proxies is a few
/// tens of kilobytes; a larger body is refused with 413 before it is buffered.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Serves the API on `listener` (on axum) until `shutdown` fires.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>, shutdown: CancellationToken) {
    let app = Router::new()
        .fallback(route)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(registry);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(error) = served {
        tracing::warn!(%error, "the Toxiproxy API stopped");
    }
}

/// Every request: the body (refused with 413 above [`MAX_BODY_BYTES`]), then [`handle`].
async fn route(
    State(registry): State<Arc<Registry>>,
    method: Method,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match body {
        Ok(body) => handle(&method, uri.path(), &body, &registry).await,
        Err(rejection) => error(rejection.status().as_u16(), &rejection.body_text()),
    }
}

/// Answers one request.
pub async fn handle(method: &Method, path: &str, body: &[u8], registry: &Registry) -> Response {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let result = match (method, segments.as_slice()) {
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
        (&Method::POST, ["proxies"]) => create_proxy(registry, body).await,
        (&Method::POST, ["populate"]) => populate(registry, body).await,
        (&Method::GET, ["proxies", name]) => registry.get(name).await.map(|p| (200, p.to_json())),
        (&Method::POST, ["proxies", name]) => update_proxy(registry, name, body).await,
        (&Method::DELETE, ["proxies", name]) => {
            registry.delete(name).await.map(|()| (204, Value::Null))
        }
        (&Method::GET, ["proxies", name, "toxics"]) => registry
            .toxics(name)
            .await
            .map(|list| (200, Value::Array(list.iter().map(Toxic::to_json).collect()))),
        (&Method::POST, ["proxies", name, "toxics"]) => create_toxic(registry, name, body).await,
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
            update_toxic(registry, name, toxic, body).await
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

fn respond(status: u16, value: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status == StatusCode::NO_CONTENT {
        return status.into_response();
    }
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn error(status: u16, message: &str) -> Response {
    respond(status, &json!({ "error": message, "status": status }))
}
