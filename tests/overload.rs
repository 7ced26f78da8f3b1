//! The server under bad clients and too much load: wrong methods get 405 with the error body,
//! a body that never finishes gets 408, a head that never finishes and an idle kept-alive
//! connection are closed, a full queue sheds before the body is read, and the HTTP threads run
//! at a lower priority than the engine; past the connection cap a request gets 503 and a
//! connection that sends nothing is closed unanswered.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// A live server on a tiny model (the model's directory lives as long as the server).
struct Server {
    live: common::LiveServer,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Server {
    type Target = common::LiveServer;
    fn deref(&self) -> &common::LiveServer {
        &self.live
    }
}

fn start(extra: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let model = common::save_with_tokenizer(&common::tiny_model(6), &dir.path().join("m"));
    Server {
        live: common::LiveServer::start(&model, extra),
        _dir: dir,
    }
}

/// Writes `raw` and reads what comes back until the server closes, `limit` passes with nothing
/// read, or `after_first` passes after the last bytes: (the answer, seconds, whether the server
/// closed the connection).
fn raw_exchange(
    port: u16,
    raw: &str,
    limit: Duration,
    after_first: Duration,
) -> (String, f64, bool) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(limit)).unwrap();
    let start = Instant::now();
    stream.write_all(raw.as_bytes()).unwrap();
    let (mut answer, mut buf, mut closed) = (Vec::new(), [0u8; 4096], false);
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            closed = true;
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        stream.set_read_timeout(Some(after_first)).unwrap();
    }
    let seconds = start.elapsed().as_secs_f64();
    (
        String::from_utf8_lossy(&answer).into_owned(),
        seconds,
        closed,
    )
}

#[test]
fn wrong_methods_and_slow_clients_get_answers_or_closed_connections() {
    let server = start(&["--header-read-timeout", "1", "--body-read-timeout", "1"]);
    let (status, text) = common::http(server.port, "GET", "/v1/completions", "", None).unwrap();
    assert_eq!(status, 405, "{text}");
    assert!(text.contains("\"code\":\"method_not_allowed\""), "{text}");
    let (status, text) = common::http(server.port, "DELETE", "/health", "", None).unwrap();
    assert!(status == 405 && text.contains("\"error\""), "{text}");

    // A body announced longer than what is sent: 408 with the error body, not a hang.
    let head = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"prompt\":";
    let short = Duration::from_millis(300);
    let (answer, seconds, _) = raw_exchange(server.port, head, Duration::from_secs(10), short);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
    assert!(seconds < 5.0, "{seconds} s");

    // A head that never finishes: the connection is closed after the header timeout.
    let partial = "POST /v1/completions HTTP/1.1\r\nHost: x\r\n";
    let (answer, seconds, closed) =
        raw_exchange(server.port, partial, Duration::from_secs(10), short);
    assert!(
        answer.is_empty() && closed && seconds < 5.0,
        "{answer:?} after {seconds} s"
    );

    // A kept-alive connection that stays idle is closed too.
    let health = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    let wait = Duration::from_secs(10);
    let (answer, seconds, closed) = raw_exchange(server.port, health, wait, wait);
    assert!(answer.starts_with("HTTP/1.1 200") && closed, "{answer:?}");
    assert!(
        seconds < 5.0,
        "the idle connection was closed after {seconds} s"
    );
}

fn nice_of_threads(pid: u32, name: &str) -> Vec<i64> {
    let tasks = Path::new("/proc").join(pid.to_string()).join("task");
    std::fs::read_dir(tasks)
        .unwrap()
        .filter_map(|t| {
            let t = t.ok()?.path();
            let comm = std::fs::read_to_string(t.join("comm")).ok()?;
            let stat = std::fs::read_to_string(t.join("stat")).ok()?;
            // Field 19 (nice) counted after the `(comm)` field, which may hold spaces.
            let after = &stat[stat.rfind(')')? + 2..];
            let nice = after.split(' ').nth(16)?.parse().ok()?;
            (comm.trim() == name).then_some(nice)
        })
        .collect()
}

#[test]
fn http_threads_run_below_the_engine_and_a_full_queue_sheds_before_the_body() {
    let server = start(&[
        "--max-batch-size",
        "1",
        "--max-queue",
        "1",
        "--http-workers",
        "2",
    ]);
    let http = nice_of_threads(server.child.id(), "t3d-http");
    let engine = nice_of_threads(server.child.id(), "t3d-engine");
    assert!(http.len() >= 2 && !engine.is_empty(), "{http:?} {engine:?}");
    assert!(
        http.iter().all(|&n| n == engine[0] + 10),
        "http {http:?}, engine {engine:?}"
    );

    // One request runs, one waits: the queue (1) is full. The second goes in only once the
    // first runs (sent together, the second could find the first still queued and be shed).
    let port = server.port;
    let long = r#"{"prompt": "abc", "max_tokens": 4000, "ignore_eos": true, "steps_per_block": 4}"#;
    let send_long = move || {
        std::thread::spawn(move || common::http(port, "POST", "/v1/completions", long, None))
    };
    let metric_is = |line: &'static str| {
        move || {
            common::http(port, "GET", "/metrics", "", None).is_some_and(|(_, m)| m.contains(line))
        }
    };
    let mut busy = vec![send_long()];
    common::wait_until(
        "the first request never ran",
        30,
        metric_is("t3d_running_requests 1"),
    );
    busy.push(send_long());
    common::wait_until(
        "the queue never filled",
        30,
        metric_is("t3d_waiting_requests 1"),
    );
    // Its body never comes: a shed request is answered at once, without reading it.
    let head = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n";
    let short = Duration::from_millis(300);
    let (answer, seconds, _) = raw_exchange(port, head, Duration::from_secs(20), short);
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(seconds < 3.0, "answered after {seconds} s");
    drop(server);
    for b in busy {
        let _ = b.join();
    }
}

#[test]
fn connections_past_the_cap_get_an_immediate_503_and_the_cap_frees_up() {
    let server = start(&["--max-connections", "2"]);
    let port = server.port;
    let idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    // Accepted in order: the two idle connections are counted before this one.
    let head = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    let (answer, seconds, closed) = raw_exchange(
        port,
        head,
        Duration::from_secs(5),
        Duration::from_millis(300),
    );
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("Retry-After: 1") && answer.contains("too_many_connections"));
    assert!(closed && seconds < 2.0, "closed {closed} after {seconds} s");
    drop(idle);
    // The server sees the closes only when it next reads them, so the first tries may still be
    // refused (a 503, or a connection closed before its answer was read): each is counted once.
    let (mut seen_503, mut seen_failed) = (0, 0);
    common::wait_until("a freed slot never served", 10, || {
        match common::http(port, "GET", "/health", "", None).map(|(s, _)| s) {
            Some(200) => return true,
            Some(503) => seen_503 += 1,
            _ => seen_failed += 1,
        }
        false
    });
    let (refused, refused_metrics) = metrics_line(port, "t3d_http_connections_refused_total ");
    let count: u64 = refused.rsplit(' ').next().unwrap().parse().unwrap();
    let first = 1 + seen_503 + refused_metrics;
    let range = first..=first + seen_failed;
    assert!(
        range.contains(&count),
        "{refused}, expected within {range:?}"
    );
}

/// The `/metrics` line starting with `prefix`, and how many tries were refused with 503 first
/// (a slot freed by a close may be counted free a moment after the client sees the close).
fn metrics_line(port: u16, prefix: &str) -> (String, u64) {
    let mut refused = 0;
    for _ in 0..50 {
        match common::http(port, "GET", "/metrics", "", None) {
            Some((200, text)) => {
                let line = text.lines().find(|l| l.starts_with(prefix));
                return (line.expect("metric missing").to_string(), refused);
            }
            Some((503, _)) => refused += 1,
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("/metrics never answered 200");
}

#[test]
fn silent_connections_are_closed_after_the_header_timeout_in_and_past_the_cap() {
    let server = start(&["--max-connections", "1", "--header-read-timeout", "1"]);
    let port = server.port;
    // Holds the one slot until the header timeout closes it (about a second): a connection
    // that never sends a byte must not hold a slot forever.
    let _held = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // An answer before any request would be read by an HTTP client as a broken connection, so
    // a refused connection that sends nothing gets nothing, and is closed like any idle one.
    let wait = Duration::from_secs(10);
    let (answer, seconds, closed) = raw_exchange(port, "", wait, wait);
    assert!(answer.is_empty() && closed, "{answer:?}");
    assert!(seconds < 5.0, "closed after {seconds} s");
    common::wait_until("the held slot was never freed", 10, || {
        common::http(port, "GET", "/health", "", None).is_some_and(|(s, _)| s == 200)
    });
    let (refused, _) = metrics_line(port, "t3d_http_connections_refused_total ");
    assert!(!refused.ends_with(" 0"), "{refused}");
}
