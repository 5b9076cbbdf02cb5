//! The load generator against the server, small: every request is
//! answered, verified, and reaches the sink exactly once.

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use kanki_radius::load::{LoadConfig, MemorySink, run};
use kanki_radius::server::{NasConfig, Server, ServerConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_generated_request_is_answered_once() {
    let config = ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        vec![
            NasConfig::new("127.0.0.1", "s3cret")
                .unwrap()
                .claiming(&["192.0.2.0/27"], &[] as &[&str])
                .unwrap(),
        ],
    );
    let server = Server::bind(config).await.unwrap();
    let target = server.local_addr().unwrap();
    let counters = server.counters();
    let sink = Arc::new(MemorySink::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(sink.clone(), async move {
        let _ = stopped.await;
    }));

    let report = run(&LoadConfig {
        target,
        secret: b"s3cret".to_vec(),
        requests: 3000,
        // More than 256: several sockets.
        window: 600,
        timeout: Duration::from_secs(5),
        rate: None,
    })
    .await
    .unwrap();
    assert_eq!(report.sent, 3000);
    assert_eq!(report.answered, 3000, "{report:?}");
    assert_eq!(report.lost + report.bad_responses, 0, "{report:?}");
    assert!(report.rate() > 0.0);

    stop.send(()).unwrap();
    serving.await.unwrap().unwrap();
    // A session's Start or Interim-Update that arrives after its Stop (the
    // generator sends them at once, over several sockets) cannot be told
    // from a replay: answered, not applied.
    let replays = counters.replays.load(SeqCst);
    assert_eq!(sink.events() + replays, 3000);
    assert_eq!(counters.events.load(SeqCst), 3000 - replays);
    assert_eq!(counters.duplicates.load(SeqCst), 0);
    assert_eq!(counters.dropped_total(), 0);
    // Start, Interim-Update and Stop of each of 1000 sessions may arrive
    // out of order across sockets; most sessions end closed.
    assert!(sink.open_sessions() <= 1000);
}

#[test]
fn bench_answers_everything() {
    let sink = Arc::new(MemorySink::default());
    let r = kanki_radius::load::bench(sink.clone(), 2000, 300).unwrap();
    assert_eq!(r.load.answered, 2000, "{:?}", r.load);
    let replays = r.server.replays.load(SeqCst);
    assert_eq!(r.server.events.load(SeqCst) + replays, 2000);
    assert_eq!(sink.events() + replays, 2000);
}
