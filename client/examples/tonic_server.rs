//! A tonic gRPC server (here the standard health service) whose calls are
//! counted into a running `count serve` as `GRPC /package.Service/Method`.
//!
//! ```sh
//! count serve &
//! cargo run -p count-client --example tonic_server   # serves 127.0.0.1:50051
//! ```

use std::time::Duration;

use count_client::{CountLayer, Counter};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let count_server = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:7777".to_owned());
    let counter = Counter::builder(count_server).build()?;
    let (_reporter, health) = tonic_health::server::health_reporter();
    let address = "127.0.0.1:50051".parse()?;
    println!("serving grpc://{address}");
    tonic::transport::Server::builder()
        .layer(CountLayer::new(counter.clone()))
        .add_service(health)
        .serve_with_shutdown(address, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    let stats = counter.shutdown(Duration::from_secs(5)).await?;
    println!("delivered {} requests", stats.delivered);
    Ok(())
}
