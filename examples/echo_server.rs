//! A bare server on the project's HTTP layer answering a fixed 60-byte JSON body: the baseline
//! for benchmarks (`cargo run --release --example echo_server -- 127.0.0.1:8099`).

use std::sync::Arc;

use bazaar::config::HttpConfig;
use bazaar::http::{Request, Response, Server, ServerOptions};

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8099".into());
    let handler = |_req: &Request| {
        Ok(Response::ok(
            serde_json::json!({"name": "GameStart", "price": 15.99, "quantity": 100}),
        ))
    };
    let options = ServerOptions::new("echo", 8, &HttpConfig::default());
    match Server::bind(&addr, options, Arc::new(handler)) {
        Ok(server) => server.join(),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    }
}
