//! `lakescore serve`'s HTTP scoring API end to end, with a real HTTP client: online
//! predictions equal batch scoring's bit for bit, every prediction lands in the online
//! table and every request in `ops.request_log`, tokens and scopes hold, bad and
//! oversized requests get named errors, the Open Inference Protocol works, `/metrics`
//! parses as Prometheus text, a promotion takes effect under load without one failed
//! request, and overload is shed with 429.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::serve::{Served, serve_configured};
use crate::serve_attacks::rss_mib;
use crate::support::lakescore;

/// A new token and its `secret_sha256`, from `lakescore serve --new-token`.
fn new_token() -> (String, String) {
    let printed = lakescore(&std::env::temp_dir(), &["serve", "--new-token"]).ok();
    let token = printed
        .lines()
        .find_map(|l| l.split("is not stored): ").nth(1))
        .unwrap()
        .trim()
        .to_string();
    let hash = printed
        .lines()
        .find_map(|l| l.strip_prefix("secret_sha256 = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_string();
    (token, hash)
}

/// The tokens of the served project: crm may use churn, reports only ltv, ops every
/// model, trickle churn at one request every two seconds (two at once).
struct Tokens {
    crm: String,
    reports: String,
    ops: String,
    trickle: String,
}

/// Serves the churn project with the HTTP API (and `http` in `[serve.http]`).
fn serve_http(http: &str) -> (Served, Tokens) {
    serve_http_with("", http, "")
}

/// Serves the churn project with `serve` in `[serve]`, `http` in `[serve.http]` and
/// `model` in the churn model's sections.
fn serve_http_with(serve_settings: &str, http: &str, model: &str) -> (Served, Tokens) {
    let (crm, crm_hash) = new_token();
    let (reports, reports_hash) = new_token();
    let (ops, ops_hash) = new_token();
    let (trickle, trickle_hash) = new_token();
    let served = serve_configured(
        &format!(
            r#"{serve_settings}
[serve.http]
listen = "127.0.0.1:0"
{http}
[[serve.token]]
name = "crm"
secret_sha256 = "{crm_hash}"
models = ["churn"]
[[serve.token]]
name = "reports"
secret_sha256 = "{reports_hash}"
models = ["ltv"]
[[serve.token]]
name = "ops"
secret_sha256 = "{ops_hash}"
models = ["*"]
[[serve.token]]
name = "trickle"
secret_sha256 = "{trickle_hash}"
models = ["churn"]
requests_per_second = 0.5
burst = 2
"#
        ),
        "",
        model,
    );
    assert_ne!(served.http_port, 0, "no HTTP address printed");
    (
        served,
        Tokens {
            crm,
            reports,
            ops,
            trickle,
        },
    )
}

/// An answer: status, `WWW-Authenticate`, body as JSON (or text as a JSON string).
struct Answer {
    status: u16,
    authenticate: Option<String>,
    body: Value,
}

async fn call(
    served: &Served,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> Answer {
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{}{path}", served.http_port);
    let mut request = match method {
        "POST" => client.post(url),
        _ => client.get(url),
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body);
    }
    let response = request.send().await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let authenticate = header("www-authenticate");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        authenticate,
        body,
    }
}

async fn predict(served: &Served, reference: &str, token: &str, rows: &Value) -> Answer {
    call(
        served,
        "POST",
        &format!("/v1/models/{reference}/predict"),
        Some(token),
        Some(json!({ "rows": rows }).to_string()),
    )
    .await
}

/// Customer rows as the extract holds them (see serve.rs: logins (i * 7) % 40, contract
/// monthly for every third).
fn customer_rows(ids: std::ops::Range<usize>) -> Value {
    Value::Array(
        ids.map(|i| {
            json!({
                "customer_id": format!("C{i:04}"),
                "logins": ((i * 7) % 40) as f64,
                "contract": if i % 3 == 0 { "monthly" } else { "yearly" },
            })
        })
        .collect(),
    )
}

/// Rows of a table or query as JSON objects (`lakescore sql --format json`).
fn json_rows(served: &Served, sql: &str) -> Vec<Value> {
    let out = crate::serve::run(served.workspace(), &["sql", sql, "--format", "json"]);
    out.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

async fn wait_until_ready(served: &Served) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = call(served, "GET", "/readyz", None, None).await;
        if ready.status == 200 {
            return;
        }
        assert_eq!(ready.status, 503, "{}", ready.body);
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn online_predictions_equal_batch_scores_and_every_one_is_kept_with_its_lineage() {
    let (served, tokens) = serve_http("max_rows = 500\nmax_body = \"64KiB\"");
    wait_until_ready(&served).await;
    assert_eq!(
        call(&served, "GET", "/healthz", None, None).await.status,
        200
    );
    crate::serve::run(
        served.workspace(),
        &["score", "churn", "--input", "curated.customers"],
    );

    // The same rows, online and in batch: equal to the last bit.
    let online = predict(&served, "churn", &tokens.crm, &customer_rows(0..40)).await;
    assert_eq!(online.status, 200, "{}", online.body);
    let predictions = online.body["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 40);
    let batch: BTreeMap<String, Value> = json_rows(
        &served,
        "SELECT customer_id, prediction, probability, confidence, top_features, model_version, model_sha256 FROM scored.churn",
    )
    .into_iter()
    .map(|row| (row["customer_id"].as_str().unwrap().to_string(), row))
    .collect();
    for prediction in predictions {
        let id = prediction["key"]["customer_id"].as_str().unwrap();
        let scored = &batch[id];
        assert_eq!(prediction["prediction"], scored["prediction"], "{id}");
        for number in ["probability", "confidence"] {
            assert_eq!(
                prediction[number].as_f64().unwrap().to_bits(),
                scored[number].as_f64().unwrap().to_bits(),
                "{id} {number}"
            );
        }
        let online_top = prediction["top_features"].as_array().unwrap();
        let batch_top = scored["top_features"].as_array().unwrap();
        assert_eq!(online_top.len(), batch_top.len(), "{id}");
        for (a, b) in online_top.iter().zip(batch_top) {
            assert_eq!(a["feature"], b["feature"], "{id}");
            assert_eq!(a["value"], b["value"], "{id}");
            assert_eq!(
                a["contribution"].as_f64().unwrap().to_bits(),
                b["contribution"].as_f64().unwrap().to_bits(),
                "{id}"
            );
        }
        assert_eq!(prediction["model_name"], "churn");
        assert_eq!(prediction["model_version"], scored["model_version"]);
        assert_eq!(prediction["model_sha256"], scored["model_sha256"]);
        assert_eq!(prediction["training_table"], "curated.customers");
        assert_eq!(prediction["prediction_id"].as_str().unwrap().len(), 32);
        assert!(prediction.get("imputed").is_none(), "{prediction}");
    }
    let request_id = online.body["request_id"].as_str().unwrap().to_string();

    // A missing feature is imputed as in training, and the answer says with what.
    let imputed = predict(
        &served,
        "churn:1",
        &tokens.crm,
        &json!([{"customer_id": "NEW1", "contract": "monthly"}]),
    )
    .await;
    assert_eq!(imputed.status, 200, "{}", imputed.body);
    let with = &imputed.body["predictions"][0]["imputed"][0];
    assert_eq!(with["feature"], "logins");
    assert!(
        with["with"]
            .as_str()
            .unwrap()
            .starts_with("the training mean, "),
        "{with}"
    );

    // Bad rows: every problem named by row and field, nothing scored.
    let bad = predict(
        &served,
        "churn",
        &tokens.crm,
        &json!([
            {"logins": "many", "contract": "monthly"},
            {"logins": 3, "contract": ["a"], "favourite_colour": "red"},
            7
        ]),
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    let problems: Vec<(u64, String)> = bad.body["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["row"].as_u64().unwrap(),
                p["field"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        problems,
        [
            (0, "logins".to_string()),
            (1, "favourite_colour".to_string()),
            (1, "contract".to_string()),
            (2, String::new())
        ],
        "{}",
        bad.body
    );
    let message = bad.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(
            "row 0, field 'logins': the feature is numeric: send a number or null, not text"
        ),
        "{message}"
    );
    assert!(
        message.contains("reads the features logins, contract"),
        "{message}"
    );
    let not_json = call(
        &served,
        "POST",
        "/v1/models/churn/predict",
        Some(&tokens.crm),
        Some(String::from("{\"rows\": [")),
    )
    .await;
    assert_eq!(not_json.status, 400);
    assert!(
        not_json.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 1 column"),
        "{}",
        not_json.body
    );
    let empty = predict(&served, "churn", &tokens.crm, &json!([])).await;
    assert_eq!(empty.status, 400, "{}", empty.body);

    // Tokens and scopes.
    let anonymous = call(
        &served,
        "POST",
        "/v1/models/churn/predict",
        None,
        Some("{}".into()),
    )
    .await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.authenticate.as_deref(), Some("Bearer"));
    let forged = predict(&served, "churn", "lks_not_a_token", &customer_rows(0..1)).await;
    assert_eq!(forged.status, 401);
    let out_of_scope = predict(&served, "churn", &tokens.reports, &customer_rows(0..1)).await;
    assert_eq!(out_of_scope.status, 403, "{}", out_of_scope.body);
    assert!(
        out_of_scope.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("client 'reports' may not use model 'churn'"),
        "{}",
        out_of_scope.body
    );
    let listed = call(&served, "GET", "/v1/models", Some(&tokens.reports), None).await;
    assert_eq!(listed.body["models"], json!([]));
    let listed = call(&served, "GET", "/v1/models", Some(&tokens.crm), None).await;
    assert_eq!(listed.body["models"][0]["name"], "churn", "{}", listed.body);
    assert_eq!(listed.body["models"][0]["aliases"]["champion"], 1);

    // Unknown models and versions.
    let unknown = predict(&served, "ltv", &tokens.ops, &customer_rows(0..1)).await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    let no_version = predict(&served, "churn:9", &tokens.ops, &customer_rows(0..1)).await;
    assert_eq!(no_version.status, 404, "{}", no_version.body);
    assert!(
        no_version.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("has no version 9; it has versions 1"),
        "{}",
        no_version.body
    );
    let bad_reference = predict(&served, "churn@best", &tokens.ops, &customer_rows(0..1)).await;
    assert_eq!(bad_reference.status, 400, "{}", bad_reference.body);
    let no_route = call(&served, "GET", "/v1/nothing", Some(&tokens.ops), None).await;
    assert_eq!(no_route.status, 404);

    // Over the limits: 413, before any scoring.
    let too_many = predict(&served, "churn", &tokens.crm, &customer_rows(0..501)).await;
    assert_eq!(too_many.status, 413, "{}", too_many.body);
    assert!(
        too_many.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("501 rows in one request; at most 500"),
        "{}",
        too_many.body
    );
    let huge = call(
        &served,
        "POST",
        "/v1/models/churn/predict",
        Some(&tokens.crm),
        Some(format!("{{\"rows\": [{}]}}", "{}, ".repeat(40_000))),
    )
    .await;
    assert_eq!(huge.status, 413, "{}", huge.body);
    // The same without a Content-Length (chunked): found while reading.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", served.http_port))
            .await
            .unwrap();
        let chunk = "{}, ".repeat(20_000);
        let request = format!(
            "POST /v1/models/churn/predict HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
            tokens.crm,
            chunk.len()
        );
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    }

    // The Open Inference Protocol: the same scores from tensors.
    let metadata = call(&served, "GET", "/v2/models/churn", Some(&tokens.crm), None).await;
    assert_eq!(metadata.status, 200, "{}", metadata.body);
    assert_eq!(
        metadata.body["inputs"],
        json!([
            {"name": "logins", "datatype": "FP64", "shape": [-1]},
            {"name": "contract", "datatype": "BYTES", "shape": [-1]}
        ])
    );
    let inferred = call(
        &served,
        "POST",
        "/v2/models/churn/infer",
        Some(&tokens.crm),
        Some(
            json!({
                "id": "ticket-7",
                "inputs": [
                    {"name": "customer_id", "shape": [2], "datatype": "BYTES", "data": ["C0000", "C0001"]},
                    {"name": "logins", "shape": [2, 1], "datatype": "FP64", "data": [[0.0], [7.0]]},
                    {"name": "contract", "shape": [2], "datatype": "BYTES", "data": ["monthly", "yearly"]}
                ]
            })
            .to_string(),
        ),
    )
    .await;
    assert_eq!(inferred.status, 200, "{}", inferred.body);
    assert_eq!(inferred.body["id"], "ticket-7");
    assert_eq!(inferred.body["model_version"], "1");
    let output = |name: &str| {
        inferred.body["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == name)
            .unwrap_or_else(|| panic!("no output {name}"))["data"]
            .clone()
    };
    for (row, id) in ["C0000", "C0001"].into_iter().enumerate() {
        assert_eq!(
            output("probability")[row].as_f64().unwrap().to_bits(),
            batch[id]["probability"].as_f64().unwrap().to_bits()
        );
        let top: Value =
            serde_json::from_str(output("top_features")[row].as_str().unwrap()).unwrap();
        assert_eq!(top[0]["feature"], batch[id]["top_features"][0]["feature"]);
    }
    let ragged = call(
        &served,
        "POST",
        "/v2/models/churn/infer",
        Some(&tokens.crm),
        Some(
            json!({"inputs": [
                {"name": "logins", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]},
                {"name": "contract", "shape": [1], "datatype": "BYTES", "data": ["monthly"]}
            ]})
            .to_string(),
        ),
    )
    .await;
    assert_eq!(ragged.status, 400);
    assert!(
        ragged.body["error"]
            .as_str()
            .unwrap()
            .contains("input 'contract' has 1 values but the inputs before it have 2"),
        "{}",
        ragged.body
    );

    // The document and the metrics.
    let document = call(&served, "GET", "/v1/openapi.json", None, None).await;
    assert!(document.body["paths"]["/v1/models/{reference}/predict"]["post"].is_object());
    let metrics = call(&served, "GET", "/metrics", None, None).await;
    let text = metrics.body.as_str().unwrap();
    let mut samples = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        assert!(
            series.chars().next().unwrap().is_ascii_alphabetic(),
            "{line}"
        );
        samples.insert(series.to_string(), value);
    }
    assert_eq!(
        samples[r#"lakescore_http_requests_total{endpoint="predict",model="churn",status="200"}"#],
        2.0
    );
    assert_eq!(
        samples[r#"lakescore_rows_scored_total{model="churn"}"#],
        43.0
    );
    assert!(
        samples.keys().all(|s| !s.contains("ltv")),
        "an unknown model became a label"
    );

    // An online prediction from values no table holds, corrected below.
    let sent = predict(
        &served,
        "churn",
        &tokens.crm,
        &json!([{"customer_id": "C0001", "logins": 33.5, "contract": "monthly"}]),
    )
    .await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    let sent_id = sent.body["predictions"][0]["prediction_id"]
        .as_str()
        .unwrap()
        .to_string();

    // Stopping commits every online prediction and request.
    let (workspace, log) = served.stop();
    assert!(!log.contains("panicked"), "{log}");
    let kept = crate::serve::csv(
        &workspace,
        "SELECT run_id, client, source_table, count(*) AS n, count(DISTINCT prediction_id) AS ids \
         FROM scored.churn_online GROUP BY run_id, client, source_table ORDER BY n DESC",
    );
    let mut lines = kept.lines().skip(1);
    assert_eq!(
        lines.next().unwrap(),
        format!("{request_id},crm,online,40,40"),
        "{kept}"
    );
    let rest: Vec<&str> = lines.collect();
    assert_eq!(rest.len(), 3, "{kept}");
    let imputed_row = crate::serve::csv(
        &workspace,
        "SELECT customer_id, features['logins'] AS logins, features['contract'] AS contract, model_version \
         FROM scored.churn_online WHERE customer_id = 'NEW1'",
    );
    assert_eq!(
        imputed_row,
        "customer_id,logins,contract,model_version\nNEW1,,monthly,1\n"
    );
    let statuses = crate::serve::csv(
        &workspace,
        "SELECT status, count(*) AS n FROM ops.request_log GROUP BY status ORDER BY status",
    );
    for expected in ["200,", "400,", "401,", "403,", "404,", "413,"] {
        assert!(
            statuses.lines().any(|l| l.starts_with(expected)),
            "{expected} missing from {statuses}"
        );
    }

    // Staff correct online predictions as they correct batch ones: by prediction_id, or
    // by key (the newest prediction of NEW1 is its online one). Each training row holds
    // the values its prediction was scored with: the ones sent, NULL where one was
    // missing (curated.customers has neither these values nor NEW1).
    workspace.append_to_project(crate::feedback::CORRECTIONS);
    let now = chrono::Utc::now().to_rfc3339();
    workspace.write_file(
        "extracts/corrections_1.csv",
        &format!(
            "prediction_id,customer_id,corrected_label,corrected_by,corrected_at,comment\n\
             {sent_id},,true,ana,{now},\n,NEW1,false,ana,{now},\n"
        ),
    );
    crate::serve::run(&workspace, &["ingest"]);
    let built = crate::serve::run(&workspace, &["feedback", "churn"]);
    assert!(
        built.contains(": 2 corrected predictions from 2 corrections in feedback.churn@"),
        "{built}"
    );
    assert_eq!(
        crate::serve::csv(
            &workspace,
            "SELECT prediction_id, customer_id, logins, contract, churned, source_table, \
             corrected_by FROM training.churn_feedback ORDER BY customer_id",
        ),
        format!(
            "prediction_id,customer_id,logins,contract,churned,source_table,corrected_by\n\
             {sent_id},C0001,33.5,monthly,true,online,ana\n{},NEW1,,monthly,false,online,ana\n",
            imputed.body["predictions"][0]["prediction_id"]
                .as_str()
                .unwrap()
        )
    );

    // Drift compares the online traffic with the training data: features from each
    // prediction's struct, outputs from the online rows themselves, by scored_at.
    let drift = crate::serve::run(
        &workspace,
        &[
            "drift",
            "churn",
            "--table",
            "scored.churn_online",
            "--window",
            "1h",
        ],
    );
    assert!(
        drift.starts_with("churn:1 on scored.churn_online@")
            && drift.contains(
                ", rows with scored_at in the last 1h against its training data curated.customers@"
            ),
        "{drift}"
    );
    assert_eq!(
        crate::serve::csv(
            &workspace,
            "SELECT DISTINCT column_name, current_rows FROM monitoring.drift_metrics \
             WHERE current_table = 'scored.churn_online' ORDER BY column_name",
        ),
        "column_name,current_rows\ncontract,44\nlogins,44\nprediction,44\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_killed_while_it_flushes_keeps_whole_requests_and_a_restart_goes_on() {
    let (served, tokens) = serve_http("flush_interval = \"20ms\"\nflush_rows = 30");
    wait_until_ready(&served).await;
    // Three-row requests one after another, the server killed (SIGKILL) while they run
    // and its writer commits every 20 ms or 30 rows.
    let url = format!(
        "http://127.0.0.1:{}/v1/models/churn/predict",
        served.http_port
    );
    let body = json!({ "rows": customer_rows(0..3) }).to_string();
    let token = tokens.crm.clone();
    let load = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut answered = 0_u64;
        loop {
            let sent = client
                .post(&url)
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(answer) if answer.status() == 200 => answered += 1,
                Ok(answer) => panic!("answered {}", answer.status()),
                Err(_) => return answered,
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let workspace = served.kill();
    let answered = load.await.unwrap();
    let committed = |workspace: &crate::support::Workspace| {
        crate::serve::csv(
            workspace,
            "SELECT count(DISTINCT run_id) AS requests, count(*) AS rows, \
             count(DISTINCT prediction_id) AS ids FROM scored.churn_online",
        )
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .map(|n| n.parse::<u64>().unwrap())
        .collect::<Vec<_>>()
    };
    // Every committed request is whole, none twice; what was not committed is lost,
    // at most the last flush_interval of answers (plus the one in flight, committed
    // before its answer reached the client).
    let [requests, rows, ids] = committed(&workspace)[..] else {
        panic!("three numbers")
    };
    assert!(
        requests > 0 && requests <= answered + 1,
        "{requests} of {answered}"
    );
    assert_eq!((rows, ids), (requests * 3, requests * 3));
    // A restarted server appends after what was committed.
    let served = crate::serve::start(workspace);
    wait_until_ready(&served).await;
    let again = predict(&served, "churn", &tokens.crm, &customer_rows(0..3)).await;
    assert_eq!(again.status, 200, "{}", again.body);
    let (workspace, log) = served.stop();
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(committed(&workspace), [requests + 1, rows + 3, ids + 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_over_its_rate_is_refused_while_others_are_served() {
    let (served, tokens) = serve_http("");
    wait_until_ready(&served).await;
    let rows = customer_rows(0..2);
    // A burst of two, then 429 with when to come back, body read and the connection kept.
    let client = reqwest::Client::new();
    let url = format!(
        "http://127.0.0.1:{}/v1/models/churn/predict",
        served.http_port
    );
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let answer = client
            .post(&url)
            .bearer_auth(&tokens.trickle)
            .header("content-type", "application/json")
            .body(json!({ "rows": rows }).to_string())
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        if status == 429 {
            assert_eq!(answer.headers()["retry-after"], "2");
            let body: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
            let message = body["error"]["message"].as_str().unwrap();
            assert!(
                message.starts_with(
                    "client 'trickle' is over its rate of 0.5 requests a second (burst 2;"
                ),
                "{message}"
            );
        }
        statuses.push(status);
    }
    assert_eq!(statuses, [200, 200, 429, 429, 429]);
    // Another client is not held back by it: five requests at once on one HTTP/2
    // connection (h2c, prior knowledge).
    let h2c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let answers = futures::future::join_all((0..5).map(|_| {
        h2c.post(&url)
            .bearer_auth(&tokens.crm)
            .header("content-type", "application/json")
            .body(json!({ "rows": rows }).to_string())
            .send()
    }))
    .await;
    for answer in answers {
        let answer = answer.unwrap();
        assert_eq!(
            (answer.status().as_u16(), answer.version()),
            (200, reqwest::Version::HTTP_2)
        );
    }
    // Two seconds later the client may score again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let again = predict(&served, "churn", &tokens.trickle, &rows).await;
    assert_eq!(again.status, 200, "{}", again.body);
    let (workspace, _) = served.stop();
    assert_eq!(
        crate::serve::csv(
            &workspace,
            "SELECT client, status, count(*) AS n FROM ops.request_log \
             WHERE endpoint = 'predict' GROUP BY client, status ORDER BY client, status",
        ),
        "client,status,n\ncrm,200,5\ntrickle,200,3\ntrickle,429,3\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_of_one_project_keep_every_prediction_of_both() {
    // Two replicas behind a load balancer: their writers commit to the same online table
    // and request log every 20 ms, racing each other.
    let (served, tokens) = serve_http("flush_interval = \"20ms\"");
    let replica = served.replica();
    wait_until_ready(&served).await;
    wait_until_ready(&replica).await;
    let send = |port: u16, token: String| async move {
        let client = reqwest::Client::new();
        let body = json!({ "rows": customer_rows(0..3) }).to_string();
        for _ in 0..40 {
            let answer = client
                .post(format!("http://127.0.0.1:{port}/v1/models/churn/predict"))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 200);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::join!(
        send(served.http_port, tokens.crm.clone()),
        send(replica.http_port, tokens.crm.clone())
    );
    replica.stop_replica();
    let (workspace, log) = served.stop();
    assert!(!log.contains("lost"), "{log}");
    assert_eq!(
        crate::serve::csv(
            &workspace,
            "SELECT count(DISTINCT run_id) AS requests, count(*) AS rows, \
             count(DISTINCT prediction_id) AS ids FROM scored.churn_online",
        ),
        "requests,rows,ids\n80,240,240\n"
    );
    assert_eq!(
        crate::serve::csv(
            &workspace,
            "SELECT count(*) AS answered FROM ops.request_log \
             WHERE status = 200 AND endpoint = 'predict'",
        ),
        "answered\n80\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_promotion_takes_effect_under_load_without_a_failed_request_and_overload_is_shed() {
    let (served, tokens) = serve_http_with(
        "[[job]]\nname = \"nightly\"\nsteps = [{ score = \"churn\", input = \"curated.customers\" }]\n",
        "model_refresh = \"200ms\"\nmax_in_flight = 1\nmax_queued = 3\nflush_interval = \"500ms\"",
        "",
    );
    wait_until_ready(&served).await;
    crate::serve::run(served.workspace(), &["run", "nightly"]);
    crate::serve::run(served.workspace(), &["train", "churn"]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..2 {
        let stop = stop.clone();
        let port = served.http_port;
        let token = tokens.crm.clone();
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let response = http
                    .post(format!("http://127.0.0.1:{port}/v1/models/churn/predict"))
                    .bearer_auth(&token)
                    .body(json!({"rows": customer_rows(client..client + 1)}).to_string())
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
                seen.push((status, body["predictions"][0]["model_version"].as_u64()));
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    crate::serve::run(served.workspace(), &["models", "promote", "churn", "2"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        let seen = client.await.unwrap();
        assert!(seen.iter().all(|(status, _)| *status == 200), "{seen:?}");
        let versions: Vec<u64> = seen.iter().filter_map(|(_, v)| *v).collect();
        assert_eq!(versions.first(), Some(&1), "{versions:?}");
        assert_eq!(versions.last(), Some(&2), "{versions:?}");
        assert!(versions.windows(2).all(|w| w[0] <= w[1]), "{versions:?}");
    }

    // Far more requests than slots and queue: the rest are refused at once with 429.
    // Sustained: memory after the last burst is where it was after the second.
    let mut refused = 0;
    let mut settled = 0;
    for round in 0..6 {
        if round == 2 {
            settled = rss_mib(served.pid());
        }
        let burst: Vec<_> = (0..24)
            .map(|_| {
                let port = served.http_port;
                let token = tokens.crm.clone();
                tokio::spawn(async move {
                    reqwest::Client::new()
                        .post(format!("http://127.0.0.1:{port}/v1/models/churn/predict"))
                        .bearer_auth(token)
                        .body(json!({"rows": customer_rows(0..2000)}).to_string())
                        .send()
                        .await
                        .unwrap()
                })
            })
            .collect();
        for response in burst {
            let response = response.await.unwrap();
            match response.status().as_u16() {
                200 => {}
                429 => {
                    refused += 1;
                    assert_eq!(response.headers()["retry-after"], "1");
                }
                other => panic!("status {other}: {}", response.text().await.unwrap()),
            }
        }
    }
    assert!(refused > 0, "no request was refused");
    let after_overload = rss_mib(served.pid());
    assert!(
        after_overload < settled + 100,
        "memory grew under overload: {settled} MiB -> {after_overload} MiB"
    );
    let after = predict(&served, "churn", &tokens.crm, &customer_rows(0..1)).await;
    assert_eq!(after.status, 200, "{}", after.body);
    let metrics = call(&served, "GET", "/metrics", None, None).await;
    let text = metrics.body.as_str().unwrap();
    for line in [
        "lakescore_model_reloads_total{model=\"churn\"} 1",
        "lakescore_job_last_run_succeeded{job=\"nightly\"} 1",
        "lakescore_job_last_run_rows_written{job=\"nightly\"} 200",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from\n{text}"
        );
    }
    let (workspace, _) = served.stop();
    let versions = crate::serve::csv(
        &workspace,
        "SELECT model_version, count(*) > 0 AS scored FROM scored.churn_online GROUP BY model_version ORDER BY model_version",
    );
    assert_eq!(versions, "model_version,scored\n1,true\n2,true\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_api_speaks_https_with_the_servers_certificate_and_a_silent_client_holds_up_no_one() {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls");
    let (served, tokens) = serve_http_with(
        &format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
            data.join("server.pem").display(),
            data.join("server.key").display()
        ),
        "",
        "",
    );
    // A client that connects and never starts its handshake.
    let _silent = tokio::net::TcpStream::connect(("127.0.0.1", served.http_port))
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let answer = client
        .post(format!(
            "https://127.0.0.1:{}/v1/models/churn/predict",
            served.http_port
        ))
        .bearer_auth(&tokens.crm)
        .body(json!({"rows": customer_rows(0..3)}).to_string())
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    // HTTP/2, chosen by ALPN; a client that speaks only HTTP/1.1 is answered too.
    assert_eq!(answer.version(), reqwest::Version::HTTP_2);
    let body: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
    assert_eq!(body["predictions"].as_array().unwrap().len(), 3);
    let http1 = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .http1_only()
        .build()
        .unwrap()
        .get(format!("https://127.0.0.1:{}/healthz", served.http_port))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (http1.status().as_u16(), http1.version()),
        (200, reqwest::Version::HTTP_11)
    );
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/healthz", served.http_port))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
    served.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_are_scored_from_the_feature_tables_newest_version_as_batch_scores_them() {
    let (served, tokens) = serve_http_with(
        "",
        "model_refresh = \"200ms\"\nrequest_timeout = \"1s\"",
        "[model.online]\nfeatures = \"curated.customers\"\n",
    );
    wait_until_ready(&served).await;
    // A client that sends its headers and then its body slowly is answered and cut off
    // at the deadline, while others are served.
    let slow = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", served.http_port))
            .await
            .unwrap();
        let head = format!(
            "POST /v1/models/churn/predict HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"keys\": [",
            tokens.crm
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        tokio::spawn(async move {
            let mut answer = Vec::new();
            let read =
                tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer))
                    .await;
            (read.is_ok(), String::from_utf8_lossy(&answer).to_string())
        })
    };
    crate::serve::run(
        served.workspace(),
        &["score", "churn", "--input", "curated.customers"],
    );
    let batch: BTreeMap<String, Value> = json_rows(
        &served,
        "SELECT customer_id, probability, top_features, source_table_version FROM scored.churn",
    )
    .into_iter()
    .map(|row| (row["customer_id"].as_str().unwrap().to_string(), row))
    .collect();
    let keyed = call(
        &served,
        "POST",
        "/v1/models/churn/predict",
        Some(&tokens.crm),
        Some(json!({"keys": ["C0003", {"customer_id": "C0010"}]}).to_string()),
    )
    .await;
    assert_eq!(keyed.status, 200, "{}", keyed.body);
    assert_eq!(keyed.body["features_table"], "curated.customers");
    let version = keyed.body["features_table_version"].as_u64().unwrap();
    assert_eq!(json!(version), batch["C0003"]["source_table_version"]);
    for (prediction, id) in keyed.body["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .zip(["C0003", "C0010"])
    {
        assert_eq!(prediction["key"]["customer_id"], id);
        assert_eq!(
            prediction["probability"].as_f64().unwrap().to_bits(),
            batch[id]["probability"].as_f64().unwrap().to_bits(),
            "{id}"
        );
        assert_eq!(
            prediction["top_features"][0]["value"],
            batch[id]["top_features"][0]["value"]
        );
    }
    let (closed, answer) = slow.await.unwrap();
    assert!(closed, "the slow client was never cut off");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("was not received and answered within 1s"),
        "{answer}"
    );
    let unknown = call(
        &served,
        "POST",
        "/v1/models/churn/predict",
        Some(&tokens.crm),
        Some(json!({"keys": ["C0003", "NOPE"]}).to_string()),
    )
    .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert!(
        unknown.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!(
                "1 of the keys is not in curated.customers@{version}: \"NOPE\""
            )),
        "{}",
        unknown.body
    );
    let too_many_keys = call(
        &served,
        "POST",
        "/v1/models/churn/predict",
        Some(&tokens.crm),
        Some(json!({"keys": vec!["C0003"; 10_001]}).to_string()),
    )
    .await;
    assert_eq!(too_many_keys.status, 413, "{}", too_many_keys.body);
    let both = call(
        &served,
        "POST",
        "/v1/models/churn/predict",
        Some(&tokens.crm),
        Some(json!({"keys": ["C0003"], "rows": []}).to_string()),
    )
    .await;
    assert_eq!(both.status, 400, "{}", both.body);

    // A new version of the feature table is picked up: C0003 now logs in often.
    served.workspace().write_file(
        "extracts/customers_2.csv",
        "customer_id,logins,contract,churned\nC0003,39,yearly,false\n",
    );
    crate::serve::run(served.workspace(), &["ingest"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let refreshed = loop {
        let answer = call(
            &served,
            "POST",
            "/v1/models/churn/predict",
            Some(&tokens.crm),
            Some(json!({"keys": ["C0003"]}).to_string()),
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        if answer.body["features_table_version"].as_u64() != Some(version) {
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "the new version was never picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        refreshed.body["features_table_version"].as_u64(),
        Some(version + 1)
    );
    assert_eq!(
        refreshed.body["predictions"][0]["top_features"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["feature"] == "logins")
            .unwrap()["value"],
        "39"
    );
    let (workspace, _) = served.stop();
    let lineage = crate::serve::csv(
        &workspace,
        "SELECT DISTINCT source_table, source_table_version FROM scored.churn_online \
         ORDER BY source_table_version",
    );
    assert_eq!(
        lineage,
        format!(
            "source_table,source_table_version\ncurated.customers,{version}\ncurated.customers,{}\n",
            version + 1
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_past_the_limit_are_refused_and_idle_ones_closed() {
    use tokio::io::AsyncReadExt;
    let (served, _tokens) =
        serve_http("max_connections = 3\nrequest_timeout = \"1s\"\nidle_timeout = \"2s\"");
    wait_until_ready(&served).await;
    // The readiness checks' connections close first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(
            tokio::net::TcpStream::connect(("127.0.0.1", served.http_port))
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/healthz", served.http_port))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a fourth connection was served: {refused:?}"
    );
    // The idle connections are closed by the server, then others are served again.
    for socket in &mut idle {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "an idle connection stayed open: {read:?}"
        );
    }
    drop(idle);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let served_again = call(&served, "GET", "/healthz", None, None).await;
    assert_eq!(served_again.status, 200);
    served.stop();
}
