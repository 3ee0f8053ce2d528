//! An axum server whose requests are counted into a running `count serve`,
//! by route template.
//!
//! ```sh
//! count serve &                                   # or scripts/serve
//! cargo run -p count-client --example axum_server   # serves 127.0.0.1:3000
//! curl http://127.0.0.1:3000/users/42
//! count totals --from $(date -u +%F) --to $(date -u +%F)   # after a rollup
//! ```

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use count_client::{CountLayer, Counter};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let count_server = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:7777".to_owned());
    let counter = Counter::builder(count_server).build()?;
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .route("/users/{id}", get(|| async { "a user" }))
        .layer(CountLayer::new(counter.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("serving http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    let stats = counter.shutdown(Duration::from_secs(5)).await?;
    println!("delivered {} requests", stats.delivered);
    Ok(())
}
