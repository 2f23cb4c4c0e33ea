//! `airlock mcp`: serves the AI agent's tools (`crate::mcp`) over stdio, the way an agent runtime starts a tool
//! server, or over streamable HTTP on loopback with `--http`. On the embedded store by default; with `--nats`, as the
//! agent's intake actor against `airlock serve`, holding only that actor's key.

use crate::cli::exit;
use crate::intake::subjects::actor_token_valid;
use crate::log::EventLog;
use crate::mcp::{AirlockTools, Backend};
use rmcp::ServiceExt;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  airlock mcp --requester support-agent --data-dir /var/lib/airlock\n  \
airlock mcp --requester support-agent --nats nats://127.0.0.1:4222 --nats-nkey seeds/intake.support-agent.nk\n  \
airlock mcp --requester support-agent --http 127.0.0.1:8765    # streamable HTTP at http://127.0.0.1:8765/mcp\n\n\
An agent's MCP configuration: examples/mcp/airlock.mcp.json")]
pub struct McpArgs {
    /// The agent's intake actor id: every request it opens is recorded as intake:ID.
    #[arg(long, env = "AIRLOCK_MCP_REQUESTER", default_value = "support-agent")]
    pub requester: String,
    /// The embedded data directory (without --nats).
    #[arg(long, env = "AIRLOCK_DATA_DIR", default_value = "airlock-data")]
    pub data_dir: PathBuf,
    /// Send requests to `airlock serve` over NATS instead of the embedded store.
    #[arg(long, env = "AIRLOCK_NATS_URL")]
    pub nats: Option<String>,
    /// The agent's nkey seed file from `airlock nats-config` (seeds/intake.ID.nk).
    #[arg(long, env = "AIRLOCK_NATS_NKEY", value_name = "FILE")]
    pub nats_nkey: Option<PathBuf>,
    /// Serve streamable HTTP at http://ADDR/mcp instead of stdio. Loopback addresses only: the endpoint has no
    /// authentication of its own, so put anything remote behind an authenticating proxy on the same host.
    #[arg(long)]
    pub http: Option<std::net::SocketAddr>,
}

pub fn run(args: McpArgs) -> u8 {
    if !actor_token_valid(&args.requester) {
        eprintln!("error: --requester {:?}: 1 to 64 of A-Z a-z 0-9 - _", args.requester);
        return exit::USAGE;
    }
    if let Some(address) = args.http
        && !address.ip().is_loopback()
    {
        eprintln!("error: --http {address}: the MCP endpoint has no authentication; listen on loopback only");
        return exit::USAGE;
    }
    let runtime = crate::cli::runtime();
    let result = runtime.block_on(async {
        match &args.nats {
            Some(url) => {
                let client = crate::nats::connect_seeded(url, "airlock-mcp", args.nats_nkey.as_deref()).await?;
                serve::<crate::log::sqlite::SqliteLog>(Backend::Nats(client), &args).await
            }
            None => {
                let embedded = crate::server::embedded::open_data_dir(&args.data_dir).await?;
                serve(Backend::embedded(embedded.service), &args).await
            }
        }
    });
    match result {
        Ok(()) => exit::OK,
        Err(error) => {
            eprintln!("error: {error:#}");
            exit::UNAVAILABLE
        }
    }
}

async fn serve<L: EventLog + 'static>(backend: Backend<L>, args: &McpArgs) -> anyhow::Result<()> {
    let backend = Arc::new(backend);
    match args.http {
        None => {
            let tools = AirlockTools::new(backend.clone(), &args.requester);
            let running = tools.serve(rmcp::transport::stdio()).await?;
            running.waiting().await?;
            backend.finish().await;
            Ok(())
        }
        Some(address) => {
            use rmcp::transport::streamable_http_server::{
                StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
            };
            let (requester, tools_backend) = (args.requester.clone(), backend.clone());
            let service: StreamableHttpService<AirlockTools<L>, LocalSessionManager> = StreamableHttpService::new(
                move || Ok(AirlockTools::new(tools_backend.clone(), &requester)),
                Default::default(),
                StreamableHttpServerConfig::default(),
            );
            let router = axum::Router::new().nest_service("/mcp", service);
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .map_err(|error| anyhow::anyhow!("cannot listen on {address}: {error}"))?;
            eprintln!("airlock mcp on http://{}/mcp", listener.local_addr()?);
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await?;
            backend.finish().await;
            Ok(())
        }
    }
}
