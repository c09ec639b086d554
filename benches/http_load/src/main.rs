//! A load client for the HTTP scoring API, used by `benches/http_api.py`: sends one
//! request body over and over to one URL, either at a fixed rate (open loop: latency is
//! measured from when each request was due, so a stalled server cannot hide its queue) or
//! from a fixed number of connections as fast as they are answered (closed loop), for a
//! bounded time, and prints one JSON line: requests, statuses, throughput and latency
//! percentiles.
//!
//!     cargo build --release -p http-load
//!     http-load --url URL --token TOKEN --body FILE [--rate 1000 | --connections 4] [--seconds 10]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// Requests in flight at most in open-loop mode (more due ones count as failures).
const MOST_IN_FLIGHT: usize = 2000;

struct Options {
    url: String,
    token: String,
    body: Vec<u8>,
    rate: Option<f64>,
    connections: usize,
    seconds: f64,
}

fn options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut options = Options {
        url: String::new(),
        token: String::new(),
        body: Vec::new(),
        rate: None,
        connections: 4,
        seconds: 10.0,
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--url" => options.url = value()?,
            "--token" => options.token = value()?,
            "--body" => {
                let path = value()?;
                options.body = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
            }
            "--rate" => options.rate = Some(value()?.parse().map_err(|_| "--rate: a number")?),
            "--connections" => {
                options.connections = value()?.parse().map_err(|_| "--connections: a number")?;
            }
            "--seconds" => options.seconds = value()?.parse().map_err(|_| "--seconds: a number")?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if options.url.is_empty() {
        return Err(String::from(
            "usage: http-load --url URL --token TOKEN --body FILE [--rate R | --connections C] [--seconds S]",
        ));
    }
    Ok(options)
}

/// What one request ended with: its status (0 when it failed to send) and latency.
type Outcome = (u16, Duration);

async fn send(client: &reqwest::Client, options: &Options) -> u16 {
    let sent = client
        .post(&options.url)
        .bearer_auth(&options.token)
        .header("content-type", "application/json")
        .body(options.body.clone())
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            // Read the whole answer, as a client would.
            let _ = response.bytes().await;
            status
        }
        Err(_) => 0,
    }
}

async fn open_loop(options: Arc<Options>, client: reqwest::Client, rate: f64) -> Vec<Outcome> {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let total = (options.seconds * rate) as u64;
    let started = Instant::now();
    let in_flight = Arc::new(Semaphore::new(MOST_IN_FLIGHT));
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 0..total {
        let due = started + interval.mul_f64(n as f64);
        tokio::time::sleep_until(due.into()).await;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            tasks.push(tokio::spawn(async move { (0, due.elapsed()) }));
            continue;
        };
        let client = client.clone();
        let options = options.clone();
        tasks.push(tokio::spawn(async move {
            let status = send(&client, &options).await;
            drop(permit);
            (status, due.elapsed())
        }));
    }
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Ok(outcome) = task.await {
            outcomes.push(outcome);
        }
    }
    outcomes
}

async fn closed_loop(options: Arc<Options>, client: reqwest::Client) -> Vec<Outcome> {
    let deadline = Instant::now() + Duration::from_secs_f64(options.seconds);
    let workers: Vec<_> = (0..options.connections)
        .map(|_| {
            let client = client.clone();
            let options = options.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                while Instant::now() < deadline {
                    let started = Instant::now();
                    let status = send(&client, &options).await;
                    outcomes.push((status, started.elapsed()));
                }
                outcomes
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for worker in workers {
        if let Ok(mut done) = worker.await {
            outcomes.append(&mut done);
        }
    }
    outcomes
}

fn percentile(sorted: &[Duration], share: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() as f64 * share).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[at].as_secs_f64() * 1000.0
}

fn main() {
    let options = match options() {
        Ok(options) => Arc::new(options),
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("no runtime: {error}");
            std::process::exit(1);
        }
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(MOST_IN_FLIGHT)
        .build()
        .unwrap_or_default();
    let started = Instant::now();
    let outcomes = runtime.block_on(async {
        match options.rate {
            Some(rate) => open_loop(options.clone(), client, rate).await,
            None => closed_loop(options.clone(), client).await,
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    for (status, _) in &outcomes {
        *statuses.entry(status.to_string()).or_default() += 1;
    }
    let mut answered: Vec<Duration> = outcomes
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, latency)| *latency)
        .collect();
    answered.sort();
    let report = serde_json::json!({
        "requests": outcomes.len(),
        "statuses": statuses,
        "seconds": elapsed,
        "ok_per_second": answered.len() as f64 / elapsed,
        "p50_ms": percentile(&answered, 0.50),
        "p99_ms": percentile(&answered, 0.99),
        "p999_ms": percentile(&answered, 0.999),
        "max_ms": answered.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    });
    println!("{report}");
}
