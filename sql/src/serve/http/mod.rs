//! `lakescore serve`'s HTTP scoring API (`[serve.http]`, `--http`): on-demand
//! predictions from the same registry, with the same explanations and lineage as batch
//! scoring, for the screens and services that ask about one customer now.
//!
//! Built on axum, speaking HTTP/1.1 and HTTP/2 (`h2` chosen by ALPN over TLS, `h2c` with
//! prior knowledge in plaintext). The routes: lakescore's own API ([`v1`]), the Open
//! Inference Protocol ([`v2`], what KServe clients send), `GET /healthz`, `GET /readyz`
//! (the champions are loaded), `GET /metrics` ([`metrics`], Prometheus text) and
//! `GET /v1/openapi.json` ([`openapi`], generated from the handlers). Who may call it:
//! [`tokens`]; which version a reference means now: [`models`]; how much work it takes on
//! at once: [`slots`], and from one client: [`quota`]; how many connections it holds and
//! for how long: [`connections`]; what it keeps: [`online_log`] (every prediction in
//! `scored.<model>_online`, every request in `ops.request_log`); what a failure answers:
//! [`errors`].

pub mod connections;
pub mod errors;
pub mod features;
pub mod job_figures;
pub mod metrics;
pub mod models;
pub mod online_log;
pub mod openapi;
pub mod quota;
pub mod slots;
pub mod tls_listener;
pub mod tokens;
pub mod v1;
pub mod v2;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::connect_info::Connected;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::{IncomingStream, Listener, ListenerExt};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use datafusion_postgres::pgwire::tokio::TlsAcceptor;
use http_body_util::{BodyExt, LengthLimitError};
use lakescore_engine::config::HttpConfig;
use lakescore_engine::ml::models::online::{
    OnlineRequest, OnlineRows, OnlineScores, read_json_rows, score_online_rows,
};
use lakescore_engine::ml::models::registry::{LoadedModel, ModelRef};
use lakescore_engine::storage::system_tables::online_table;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use self::connections::Guarded;
use self::errors::ApiError;
use self::features::FeatureTables;
use self::job_figures::JobFigures;
use self::metrics::Metrics;
use self::models::LiveModels;
use self::online_log::{Flushing, MAX_BACKLOG, OnlineLog, OnlineWriter, RequestEntry};
use self::slots::{Place, Slots};
use self::tls_listener::TlsListener;
use self::tokens::{Client, Tokens};
use super::Listening;
use crate::error::{Error, Result};

pub use self::tokens::new_token;

/// HTTP, as `[serve.http]` configures it (its defaults when the section is absent).
pub struct Http;

/// The HTTP API to start: build it ([`Listening::new`], and [`Listening::with_listen`]
/// instead of `[serve.http] listen`), [`HttpServer::bind`] it, then [`HttpBound::run`] it.
pub type HttpServer = Listening<Http>;

impl HttpServer {
    /// Checks the tokens and binds the address.
    pub async fn bind(self) -> Result<HttpBound> {
        let serve = &self.project.config.serve;
        let config = serve.http.clone().unwrap_or_default();
        let tokens = Tokens::new(&serve.tokens, &config);
        if tokens.admit_no_one() {
            return Err(Error::Serve(String::from(
                "no client could call the HTTP API: add a [[serve.token]] (`lakescore serve --new-token` makes one), or set [serve.http] allow_anonymous = true",
            )));
        }
        let listen = self.address(&config.listen);
        let listener = TcpListener::bind(&listen)
            .await
            .map_err(|source| Error::Network {
                what: format!("cannot listen on {listen} (set --http or [serve.http] listen)"),
                source,
            })?;
        let tls = match (&serve.tls_cert, &serve.tls_key) {
            (Some(cert), Some(key)) => Some(super::tls::http_acceptor(
                &self.project.dir.join(cert),
                &self.project.dir.join(key),
            )?),
            _ => None,
        };
        let metrics = Arc::new(Metrics::default());
        let stop_writing = CancellationToken::new();
        let flushing = Flushing {
            interval: config.flush_interval,
            rows: config.flush_rows,
        };
        let (online, writer) = OnlineLog::start(
            self.lakehouse.clone(),
            flushing,
            metrics.clone(),
            stop_writing.clone(),
        )
        .map_err(|error| {
            Error::Serve(format!(
                "cannot start the thread that writes online predictions: {error}"
            ))
        })?;
        let api = Arc::new(Api {
            top_features: self.project.config.functions.top_features,
            tokens,
            features: Arc::new(
                FeatureTables::new(&self.project, self.lakehouse.clone()).map_err(Error::Serve)?,
            ),
            jobs: JobFigures::new(self.lakehouse.clone()),
            models: LiveModels::new(self.lakehouse, config.model_refresh, metrics.clone()),
            slots: Slots::new(config.max_in_flight, config.max_queued),
            online,
            metrics,
            ready: AtomicBool::new(false),
            config,
        });
        Ok(HttpBound {
            listener,
            tls,
            api,
            writer,
            stop_writing,
        })
    }
}

/// A bound HTTP API, ready to answer.
pub struct HttpBound {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    api: Arc<Api>,
    writer: OnlineWriter,
    stop_writing: CancellationToken,
}

impl HttpBound {
    /// True when requests come over TLS (HTTPS).
    pub fn has_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The address it listens on (the port the system chose for port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener.local_addr().map_err(|source| Error::Network {
            what: String::from("no local address"),
            source,
        })
    }

    /// Answers requests until `shutdown` is cancelled, lets the running ones finish,
    /// then commits every online prediction and request entry still waiting.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let api = self.api.clone();
        let refreshing = self.stop_writing.child_token();
        tokio::spawn(async move {
            let loaded = api.models.preload().await;
            api.features.refresh().await;
            tracing::info!("HTTP API ready; champions loaded: {}", loaded.join(", "));
            api.ready.store(true, Ordering::Release);
            let features = api.features.clone();
            let refresh = api.config.model_refresh;
            drop(api);
            features.keep_current(refresh, refreshing).await;
        });
        let app = router(self.api.clone());
        let (most, idle) = (
            self.api.config.max_connections,
            self.api.config.idle_timeout,
        );
        // tap_io outermost: it gives handlers the client's address.
        let served = match self.tls {
            None => {
                let listener = self.listener.tap_io(|socket| {
                    let _ = socket.set_nodelay(true);
                });
                let listener = Guarded::new(listener, most, idle).tap_io(|_| {});
                serve(listener, app, shutdown).await
            }
            Some(acceptor) => match TlsListener::new(self.listener, acceptor) {
                // The connections' own options were set before their handshakes.
                Ok(listener) => {
                    let listener = Guarded::new(listener, most, idle).tap_io(|_| {});
                    serve(listener, app, shutdown).await
                }
                Err(error) => Err(error),
            },
        };
        self.stop_writing.cancel();
        self.writer.flush().await;
        served.map_err(|source| Error::Network {
            what: String::from("the HTTP API stopped"),
            source,
        })
    }
}

/// Answers on `listener` until `shutdown`, then lets running requests finish.
async fn serve<L>(listener: L, app: Router, shutdown: CancellationToken) -> std::io::Result<()>
where
    L: Listener<Addr = SocketAddr>,
    for<'a> SocketAddr: Connected<IncomingStream<'a, L>>,
{
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await
}

fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/v1/models", get(v1::list_models))
        .route("/v1/models/{reference}/predict", post(v1::predict))
        .route("/v1/openapi.json", get(openapi::document))
        .route("/v2", get(v2::server_metadata))
        .route("/v2/health/live", get(healthz))
        .route("/v2/health/ready", get(readyz))
        .route("/v2/models/{name}", get(v2::model_metadata))
        .route("/v2/models/{name}/ready", get(v2::model_ready))
        .route("/v2/models/{name}/infer", post(v2::infer))
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(v2::infer_version),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(prometheus))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(api.clone(), deadline))
        .with_state(api)
}

/// Ends any request, body upload included, that is not answered within
/// `request_timeout` and a second: a client sending its body slowly cannot hold a
/// connection (or a stopping server) open. Scoring has its own, shorter deadline, which
/// answers and audits first.
async fn deadline(State(api): State<Arc<Api>>, request: Request, next: Next) -> Response {
    let limit = api.config.request_timeout + Duration::from_secs(1);
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable(format!(
            "the request was not received and answered within {} ([serve.http] request_timeout)",
            humantime::format_duration(api.config.request_timeout)
        ))
        .into_response(),
    }
}

/// What every handler shares.
pub struct Api {
    config: HttpConfig,
    top_features: usize,
    tokens: Tokens,
    models: LiveModels,
    features: Arc<FeatureTables>,
    jobs: JobFigures,
    slots: Slots,
    online: OnlineLog,
    metrics: Arc<Metrics>,
    ready: AtomicBool,
}

impl Api {
    /// The client of a request's `Authorization` header.
    fn client(&self, headers: &HeaderMap, exchange: &mut Exchange) -> Result<Client, ApiError> {
        let authorization = match headers.get(header::AUTHORIZATION) {
            None => None,
            Some(value) => Some(value.to_str().map_err(|_| {
                ApiError::Unauthorized(String::from("the Authorization header is not text"))
            })?),
        };
        let client = self.tokens.client(authorization)?;
        exchange.client = client.name.clone();
        Ok(client)
    }

    /// Scores the rows `parse` reads from the body (given the version `reference` names
    /// now), keeps the predictions for the online table, and returns them.
    async fn score(
        &self,
        exchange: &mut Exchange,
        client: &Client,
        reference: &ModelRef,
        place: Place<'_>,
        parse: impl FnOnce(&LoadedModel) -> Result<Parsed, ApiError> + Send + 'static,
    ) -> Result<Scored, ApiError> {
        if self.online.backlog() > MAX_BACKLOG {
            return Err(ApiError::Unavailable(String::from(
                "online predictions cannot be kept right now (the lakehouse is not taking writes); try again later",
            )));
        }
        let timeout = self.config.request_timeout;
        let work = async {
            let model = self.models.get(reference).await?;
            exchange.model = Some(model.clone());
            let mut request = OnlineRequest {
                request_id: exchange.request_id.clone(),
                client: client.name.clone(),
                scored_at: Utc::now(),
                top_features: self.top_features,
                source: None,
            };
            let max_rows = self.config.max_rows;
            let scoring = model.clone();
            let (scores, source) = self
                .slots
                .run(place, move || {
                    let Parsed { rows, source } = parse(&scoring)?;
                    let count = match &rows {
                        ParsedRows::Sent(rows) => rows.len(),
                        ParsedRows::LookedUp(rows) => rows.rows,
                    };
                    if count == 0 {
                        return Err(ApiError::bad_request("no rows to score: send at least one"));
                    }
                    if count > max_rows {
                        return Err(too_many_rows(count, max_rows));
                    }
                    let rows = match rows {
                        ParsedRows::Sent(rows) => read_json_rows(&scoring, &rows)?,
                        ParsedRows::LookedUp(rows) => rows,
                    };
                    request.source = source.clone();
                    let scores = score_online_rows(&scoring, &rows, &request)?;
                    Ok((scores, source))
                })
                .await??;
            Ok::<_, ApiError>(Scored {
                model,
                scores,
                source,
            })
        };
        let scored = tokio::time::timeout(timeout, work).await.map_err(|_| {
            ApiError::Unavailable(format!(
                "the request did not finish within {} ([serve.http] request_timeout); try again, or send fewer rows",
                humantime::format_duration(timeout)
            ))
        })??;
        exchange.rows = scored.scores.batch.num_rows() as u64;
        self.online.predictions(
            online_table(&scored.model.manifest.name),
            scored.scores.batch.clone(),
        );
        Ok(scored)
    }
}

/// The rows a request sends or names, and the table version they were looked up in.
pub struct Parsed {
    /// The rows.
    pub rows: ParsedRows,
    /// The feature table and version, when the rows were looked up by key.
    pub source: Option<(String, u64)>,
}

/// A request's rows: sent in its body, or looked up by key in a feature table.
pub enum ParsedRows {
    /// Feature (and key) values, one JSON object per row, read strictly when scored.
    Sent(Vec<Value>),
    /// Values read from the feature table as batch scoring reads them.
    LookedUp(OnlineRows),
}

/// A request's scored rows.
pub struct Scored {
    /// The version that scored them.
    pub model: Arc<LoadedModel>,
    /// The rows, in the online table's layout.
    pub scores: OnlineScores,
    /// The feature table and version, when the rows were looked up by key.
    pub source: Option<(String, u64)>,
}

/// One request's bookkeeping: its id, who sent it, what it scored, and, when it is
/// answered, its entry in `ops.request_log` and the metrics.
pub struct Exchange {
    request_id: String,
    endpoint: &'static str,
    started: Instant,
    at: DateTime<Utc>,
    address: SocketAddr,
    client: String,
    model: Option<Arc<LoadedModel>>,
    rows: u64,
    open_inference: bool,
}

impl Exchange {
    /// A request to lakescore's own API.
    fn new(endpoint: &'static str, address: SocketAddr) -> Self {
        Self {
            request_id: uuid::Uuid::now_v7().to_string(),
            endpoint,
            started: Instant::now(),
            at: Utc::now(),
            address,
            client: String::new(),
            model: None,
            rows: 0,
            open_inference: false,
        }
    }

    /// A request in the Open Inference Protocol, whose failures answer its way.
    fn v2(endpoint: &'static str, address: SocketAddr) -> Self {
        Self {
            open_inference: true,
            ..Self::new(endpoint, address)
        }
    }

    /// The response to send, after logging and counting it.
    fn finish(self, api: &Api, result: Result<Response, ApiError>) -> Response {
        let (mut response, error) = match result {
            Ok(response) => (response, None),
            Err(error) => {
                let message = error.to_string();
                let response = if self.open_inference {
                    error.into_open_inference_response()
                } else {
                    error.into_response()
                };
                (response, Some(message))
            }
        };
        if let Ok(id) = HeaderValue::from_str(&self.request_id) {
            response.headers_mut().insert("x-request-id", id);
        }
        let status = response.status().as_u16();
        let took = self.started.elapsed();
        let model_name = self.model.as_ref().map(|m| m.manifest.name.as_str());
        api.metrics
            .request(self.endpoint, model_name, status, self.rows, took);
        api.online.request(RequestEntry {
            request_id: self.request_id,
            at: self.at,
            client: self.client,
            address: self.address.to_string(),
            endpoint: self.endpoint.to_string(),
            model: self
                .model
                .as_ref()
                .map(|m| format!("{}:{}", m.manifest.name, m.manifest.version)),
            rows: self.rows,
            status,
            latency: took,
            error,
        });
        response
    }
}

/// The 413 for a request of `rows` rows or keys.
fn too_many_rows(rows: usize, max_rows: usize) -> ApiError {
    ApiError::TooLarge(format!(
        "{rows} rows in one request; at most {max_rows} ([serve.http] max_rows): send them in smaller requests"
    ))
}

/// A model reference from a path, or 400.
fn model_reference(text: &str) -> Result<ModelRef, ApiError> {
    ModelRef::parse(text).map_err(|error| ApiError::bad_request(error.to_string()))
}

/// Takes a queue place for `client`'s scoring request, or refuses it with 429 (the client
/// is over its `requests_per_second`, or the queue is full) after reading and
/// discarding its body (up to `max_body`, never held): a server that answered before
/// reading would close the connection on unread bytes and the client would see a reset
/// instead of the 429.
async fn admit<'a>(api: &'a Api, client: &Client, body: &mut Body) -> Result<Place<'a>, ApiError> {
    match client.take_request().and_then(|()| api.slots.admit()) {
        Ok(place) => Ok(place),
        Err(refused) => {
            let mut left = api.config.max_body;
            while let Some(Ok(frame)) = body.frame().await {
                let read = frame.data_ref().map_or(0, |data| data.len() as u64);
                left = left.saturating_sub(read);
                if left == 0 {
                    break;
                }
            }
            Err(refused)
        }
    }
}

/// The body, read once the request has its place in the queue; 413 when it is over
/// `max_body` (said by its `Content-Length` or found while reading).
async fn read_body(api: &Api, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let limit = usize::try_from(api.config.max_body).unwrap_or(usize::MAX);
    let too_large = || {
        ApiError::TooLarge(format!(
            "the body is larger than {} bytes ([serve.http] max_body): send fewer rows per request",
            api.config.max_body
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > api.config.max_body) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        let error = error.into_inner();
        if error.downcast_ref::<LengthLimitError>().is_some() {
            too_large()
        } else {
            ApiError::bad_request(format!("the body could not be read: {error}"))
        }
    })
}

/// `GET /healthz`: the server answers.
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 once the champions are loaded, 503 before.
async fn readyz(State(api): State<Arc<Api>>) -> Response {
    if api.ready.load(Ordering::Acquire) {
        Json(json!({"ready": true})).into_response()
    } else {
        ApiError::Unavailable(String::from("loading models")).into_response()
    }
}

/// `GET /metrics`.
async fn prometheus(State(api): State<Arc<Api>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        api.metrics
            .render(api.online.backlog(), &api.jobs.last_runs().await),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::NotFound(String::from(
        "no such endpoint; GET /v1/openapi.json lists them",
    ))
}
