//! OpenTelemetry export of a real run against the emulator: an in-test OTLP/HTTP
//! (protobuf) receiver captures the worker's spans and metrics; their names, attributes
//! and counts are checked, and the log lines carry the exported trace id.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use common::*;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, NumberDataPoint};
use prost::Message;

type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Accepts OTLP/HTTP posts on a loopback port, keeps (path, body), answers 200.
fn receiver() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let received: Received = Arc::default();
    let store = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let store = store.clone();
            std::thread::spawn(move || serve(stream, store));
        }
    });
    (url, received)
}

/// HTTP/1.1 requests on one connection, bodies by Content-Length or chunked.
fn serve(stream: TcpStream, store: Received) {
    let mut writer = stream.try_clone().expect("clone stream");
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
        let (mut length, mut chunked) = (0usize, false);
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let lower = header.to_ascii_lowercase();
            if let Some(n) = lower.strip_prefix("content-length:") {
                length = n.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).expect("chunk size");
                let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0; size + 2];
                reader.read_exact(&mut chunk).expect("chunk");
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else {
            body.resize(length, 0);
            reader.read_exact(&mut body).expect("body");
        }
        store.lock().unwrap().push((path, body));
        let _ = writer.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n",
        );
    }
}

fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|a| a.key == key)?.value.as_ref()?;
    match value.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

/// A sum's or a gauge's data point as a number.
fn number(point: &NumberDataPoint) -> f64 {
    match point.value {
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        Some(number_data_point::Value::AsDouble(d)) => d,
        None => 0.0,
    }
}

/// A span as the test looks at it.
#[derive(Debug)]
struct Span {
    name: String,
    trace_id: String,
    attributes: Vec<KeyValue>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_exports_spans_and_metrics_over_otlp() {
    let (url, received) = receiver();
    let env = TestEnv::builder("otel").start().await;
    let worker = env
        .worker()
        .env("LAKEWORKER__TELEMETRY__OTLP_ENDPOINT", url.as_str())
        .env("OTEL_METRIC_EXPORT_INTERVAL", "500")
        .start();
    let key = "users/otel.csv";
    env.put(key, &example("users/signups-2024-05.csv")).await;
    env.wait_lake_keys(3).await;
    env.wait_drained().await;
    let log = {
        let log = worker.log_path();
        assert!(worker.terminate(WAIT).success(), "worker exit");
        std::fs::read_to_string(log).expect("log")
    };

    let posts = received.lock().unwrap().clone();
    let mut spans = Vec::new();
    let mut metrics: HashMap<String, Vec<(Vec<KeyValue>, f64)>> = HashMap::new();
    let mut kinds: HashMap<String, &str> = HashMap::new();
    for (path, body) in &posts {
        match path.as_str() {
            "/v1/traces" => {
                let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("traces");
                for resource in request.resource_spans {
                    let attributes = resource.resource.map(|r| r.attributes).unwrap_or_default();
                    assert_eq!(
                        text(&attributes, "service.name").as_deref(),
                        Some("lakeworker")
                    );
                    for scope in resource.scope_spans {
                        for span in scope.spans {
                            spans.push(Span {
                                name: span.name,
                                trace_id: span
                                    .trace_id
                                    .iter()
                                    .map(|b| format!("{b:02x}"))
                                    .collect(),
                                attributes: span.attributes,
                            });
                        }
                    }
                }
            }
            "/v1/metrics" => {
                let request =
                    ExportMetricsServiceRequest::decode(body.as_slice()).expect("metrics");
                for scope in request
                    .resource_metrics
                    .into_iter()
                    .flat_map(|r| r.scope_metrics)
                {
                    for metric in scope.metrics {
                        let kind = match &metric.data {
                            Some(metric::Data::Sum(_)) => "sum",
                            Some(metric::Data::Gauge(_)) => "gauge",
                            Some(metric::Data::Histogram(_)) => "histogram",
                            _ => "other",
                        };
                        kinds.insert(metric.name.clone(), kind);
                        let points: Vec<(Vec<KeyValue>, f64)> = match metric.data {
                            Some(metric::Data::Sum(sum)) => sum
                                .data_points
                                .into_iter()
                                .map(|p| {
                                    let value = number(&p);
                                    (p.attributes, value)
                                })
                                .collect(),
                            Some(metric::Data::Gauge(gauge)) => gauge
                                .data_points
                                .into_iter()
                                .map(|p| {
                                    let value = number(&p);
                                    (p.attributes, value)
                                })
                                .collect(),
                            Some(metric::Data::Histogram(h)) => h
                                .data_points
                                .into_iter()
                                .map(|p| (p.attributes, p.count as f64))
                                .collect(),
                            _ => Vec::new(),
                        };
                        // Cumulative: the last export of each series holds its total
                        // (and a gauge's last value).
                        metrics.insert(metric.name, points);
                    }
                }
            }
            other => panic!("unexpected OTLP path {other}"),
        }
    }

    // One message span for the file, with its attributes.
    let messages: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "message" && text(&s.attributes, "key").as_deref() == Some(key))
        .collect();
    assert_eq!(messages.len(), 1, "{spans:#?}");
    let message = messages[0];
    for (attribute, expected) in [
        ("dataset", "users"),
        ("bucket", env.landing.as_str()),
        ("outcome", "succeeded"),
        ("attempt", "1"),
    ] {
        assert_eq!(
            text(&message.attributes, attribute).as_deref(),
            Some(expected),
            "{message:?}"
        );
    }
    assert!(text(&message.attributes, "message_id").is_some());
    // Its children, in the same trace.
    let children: Vec<&str> = spans
        .iter()
        .filter(|s| s.trace_id == message.trace_id && s.name != "message")
        .map(|s| s.name.as_str())
        .collect();
    for child in [
        "object",
        "ledger",
        "download",
        "convert",
        "lake_write",
        "table_write",
    ] {
        assert!(
            children.contains(&child),
            "{child} missing from {children:?}"
        );
    }
    let object = spans
        .iter()
        .find(|s| s.trace_id == message.trace_id && s.name == "object")
        .unwrap();
    assert_eq!(
        text(&object.attributes, "outcome").as_deref(),
        Some("written")
    );

    // The log lines of that message carry the same trace id.
    assert!(
        events_in(&log, "message handled").iter().any(|event| {
            span_field(event, "message", "trace_id") == Some(&message.trace_id.as_str().into())
        }),
        "no log line with trace id {}:\n{log}",
        message.trace_id
    );

    // Metrics: totals by attribute.
    let total = |name: &str, key: &str, value: &str| -> f64 {
        metrics
            .get(name)
            .map(|points| {
                points
                    .iter()
                    .filter(|(attributes, _)| text(attributes, key).as_deref() == Some(value))
                    .map(|(_, v)| v)
                    .sum()
            })
            .unwrap_or(0.0)
    };
    // The file's message, and S3's test event from setting up the notification.
    assert_eq!(
        total("lakeworker.messages", "outcome", "succeeded"),
        1.0,
        "{metrics:#?}"
    );
    assert_eq!(
        total("lakeworker.messages", "outcome", "received"),
        1.0 + total("lakeworker.messages", "outcome", "discarded")
    );
    assert_eq!(total("lakeworker.rows", "kind", "read"), 6.0);
    assert_eq!(total("lakeworker.rows", "kind", "written"), 6.0);
    assert!(total("lakeworker.bytes", "direction", "written") > 0.0);
    assert_eq!(
        total("lakeworker.message.duration", "outcome", "succeeded"),
        1.0
    );
    // A gauge: a collector turning cumulative sums into deltas (CloudWatch EMF) keeps it.
    assert_eq!(kinds["lakeworker.in_flight"], "gauge");
    let in_flight: f64 = metrics["lakeworker.in_flight"].iter().map(|(_, v)| v).sum();
    assert_eq!(in_flight, 0.0, "every message finished");
    let polls: f64 = metrics["lakeworker.poll.duration"]
        .iter()
        .map(|(_, v)| v)
        .sum();
    assert!(polls >= 1.0);
}
