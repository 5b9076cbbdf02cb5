//! Sustained accounting throughput, with responses.
//!
//! Starts the accounting server on loopback with an in-memory sink that
//! keeps open sessions the way a directory does ([`MemorySink`]), then
//! runs the load generator ([`kanki_radius::load::run`]) beside it, on its
//! own thread and runtime, and prints what came back.
//!
//! ```sh
//! cargo run --release -p kanki-radius --example load -- --requests 1000000 --window 512
//! # or in two processes:
//! cargo run --release -p kanki-radius --example load -- --serve 127.0.0.1:18130
//! cargo run --release -p kanki-radius --example load -- --send 127.0.0.1:18130 --requests 1000000
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kanki_radius::load::{LoadConfig, LoadReport, MemorySink, run};
use kanki_radius::server::{NasConfig, Server, ServerConfig};

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
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "load: {e}\nusage: load [--requests N] [--window N] [--serve ADDR | --send ADDR]"
            );
            std::process::exit(2);
        }
    };
    if let Some(target) = args.send {
        let report = generate(target, &args);
        print_report(&report);
        return;
    }
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let listen = args.serve.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap());
    let config = ServerConfig::new(listen, vec![NasConfig::new("127.0.0.0/8", SECRET).unwrap()]);
    let server = server_rt.block_on(Server::bind(config)).expect("bind");
    let addr = server.local_addr().unwrap();
    let counters = server.counters();
    let sink = Arc::new(MemorySink::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = server_rt.spawn(server.run(sink.clone(), async move {
        let _ = stopped.await;
    }));
    if args.serve.is_some() {
        eprintln!("serving on {addr}; Ctrl-C to stop");
        server_rt.block_on(async {
            let _ = tokio::signal::ctrl_c().await;
        });
    } else {
        let report = std::thread::scope(|s| {
            s.spawn(|| generate(addr, &args))
                .join()
                .expect("the generator")
        });
        print_report(&report);
    }
    let _ = stop.send(());
    server_rt.block_on(serving).unwrap().unwrap();
    use std::sync::atomic::Ordering::Relaxed;
    let batches = counters.batches.load(Relaxed);
    let events = counters.events.load(Relaxed);
    println!(
        "server: received {} answered {} dropped {} duplicates {} sink errors {}; {} batches, {:.0} events per batch; {} sessions open in the sink",
        counters.received.load(Relaxed),
        counters.answered.load(Relaxed),
        counters.dropped_total(),
        counters.duplicates.load(Relaxed),
        counters.sink_errors.load(Relaxed),
        batches,
        events as f64 / batches.max(1) as f64,
        sink.open_sessions(),
    );
}

fn generate(target: SocketAddr, args: &Args) -> LoadReport {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let config = LoadConfig {
        target,
        secret: SECRET.into(),
        requests: args.requests,
        window: args.window,
        timeout: Duration::from_secs(2),
    };
    rt.block_on(run(&config)).expect("the load generator")
}

fn print_report(r: &LoadReport) {
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
