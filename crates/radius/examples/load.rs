//! Sustained accounting throughput, with responses.
//!
//! By default: [`kanki_radius::load::bench`], i.e. the accounting server
//! on loopback in front of an in-memory sink that keeps open sessions the
//! way a directory does ([`MemorySink`]), and the load generator beside it
//! on its own thread. With `--serve` / `--send`, server and generator run
//! as two processes.
//!
//! ```sh
//! cargo run --release -p kanki-radius --example load -- --requests 1000000 --window 512
//! # or in two processes:
//! cargo run --release -p kanki-radius --example load -- --serve 127.0.0.1:18130
//! cargo run --release -p kanki-radius --example load -- --send 127.0.0.1:18130 --requests 1000000
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use kanki_radius::load::{LoadConfig, LoadReport, MemorySink, bench, run};
use kanki_radius::server::{Counters, NasConfig, Server, ServerConfig};

/// The secret of `--serve` and `--send`.
const SECRET: &str = "testing123";

struct Args {
    requests: u64,
    window: usize,
    serve: Option<SocketAddr>,
    send: Option<SocketAddr>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        requests: 1_000_000,
        window: 512,
        serve: None,
        send: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--requests" => a.requests = value()?.parse().map_err(|e| format!("{e}"))?,
            "--window" => a.window = value()?.parse().map_err(|e| format!("{e}"))?,
            "--serve" => a.serve = Some(value()?.parse().map_err(|e| format!("{e}"))?),
            "--send" => a.send = Some(value()?.parse().map_err(|e| format!("{e}"))?),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    Ok(a)
}

fn main() {
    let args = args().unwrap_or_else(|e| {
        eprintln!(
            "load: {e}\nusage: load [--requests N] [--window N] [--serve ADDR | --send ADDR]"
        );
        std::process::exit(2);
    });
    let sink = Arc::new(MemorySink::default());
    if let Some(target) = args.send {
        print_load(&send(target, &args));
    } else if let Some(listen) = args.serve {
        serve(listen, sink.clone());
    } else {
        let report = bench(sink.clone(), args.requests, args.window).expect("the benchmark");
        print_load(&report.load);
        print_server(&report.server, &sink);
    }
}

fn send(target: SocketAddr, args: &Args) -> LoadReport {
    let config = LoadConfig {
        target,
        secret: SECRET.into(),
        requests: args.requests,
        window: args.window,
        timeout: Duration::from_secs(2),
        rate: None,
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(run(&config))
        .expect("the load generator")
}

fn serve(listen: SocketAddr, sink: Arc<MemorySink>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let nas = NasConfig::new("127.0.0.0/8", SECRET).unwrap();
    let server = rt
        .block_on(Server::bind(ServerConfig::new(listen, vec![nas])))
        .expect("bind");
    let counters = server.counters();
    eprintln!("serving on {listen}, secret {SECRET}; Ctrl-C to stop");
    rt.block_on(server.run(sink.clone(), async {
        let _ = tokio::signal::ctrl_c().await;
    }))
    .expect("the server");
    print_server(&counters, &sink);
}

fn print_load(r: &LoadReport) {
    println!(
        "load: sent {} answered {} lost {} bad {} in {:.2} s: {:.0} requests/s answered; latency p50 {:?} p99 {:?} max {:?}",
        r.sent,
        r.answered,
        r.lost,
        r.bad_responses,
        r.elapsed.as_secs_f64(),
        r.rate(),
        r.latency_p50,
        r.latency_p99,
        r.latency_max,
    );
}

fn print_server(c: &Counters, sink: &MemorySink) {
    let batches = c.batches.load(Relaxed);
    println!(
        "server: received {} answered {} dropped {} duplicates {} sink errors {}; {} batches, {:.0} events per batch; {} sessions open in the sink",
        c.received.load(Relaxed),
        c.answered.load(Relaxed),
        c.dropped_total(),
        c.duplicates.load(Relaxed),
        c.sink_errors.load(Relaxed),
        batches,
        c.events.load(Relaxed) as f64 / batches.max(1) as f64,
        sink.open_sessions(),
    );
}
