//! Reaching a running count server, for the subcommands that are its
//! clients (`count add`, `count totals`).

use std::path::PathBuf;

use clap::Args;
use count_client::BearerToken;
use count_proto::v1::count_service_client::CountServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use crate::error::{Error, Result};

/// Which server, and how to trust it.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The count server's URL (`https://` for TLS).
    #[arg(long, env = "COUNT_SERVER", default_value = "http://127.0.0.1:7777")]
    pub server: String,
    /// CA (PEM) the server's certificate chains to [default for https:
    /// the system's roots].
    #[arg(long, env = "COUNT_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

/// A client of the server, presenting `COUNT_TOKEN` when it is set (tokens
/// come from the environment, never from the command line).
pub(super) type Client = CountServiceClient<InterceptedService<Channel, BearerToken>>;

impl ServerArgs {
    /// Connects to the server.
    pub(super) async fn connect(&self) -> Result<Client> {
        let token = std::env::var("COUNT_TOKEN").ok();
        let token = BearerToken::new(token.as_deref())
            .map_err(|e| Error::invalid("COUNT_TOKEN", e.to_string()))?;
        let mut endpoint = tonic::transport::Endpoint::from_shared(self.server.clone())
            .map_err(|e| Error::invalid("--server", e.to_string()))?;
        if self.server.starts_with("https:") {
            let tls = match &self.ca_cert {
                Some(ca) => {
                    let pem = std::fs::read(ca)
                        .map_err(Error::io(format!("reading {}", ca.display())))?;
                    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
                }
                None => ClientTlsConfig::new().with_native_roots(),
            };
            endpoint = endpoint.tls_config(tls)?;
        }
        let channel = endpoint.connect().await?;
        Ok(CountServiceClient::with_interceptor(channel, token))
    }
}
