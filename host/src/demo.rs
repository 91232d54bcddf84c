//! `edge-router demo`: the router on an example config, with small local
//! OpenAI-compatible origins it starts itself (the project's fake origin,
//! `fake-origin`, with its demo script).
//!
//! The demo origins answer with canned completions (streamed as SSE when
//! asked) that name the origin, so each curl shows where a request went. A
//! control port stops and restarts them to show fallback.

use std::convert::Infallible;

use bytes::Bytes;
use fake_origin::{FakeOrigin, Script};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The config the demo runs, with `{{node-id}}` placeholders for origin URLs.
pub const DEMO_CONFIG: &str = include_str!("../../examples/demo.yaml");

/// The demo's origins by node id, and the config text pointing at them.
pub struct DemoFleet {
    /// Origins, by node id.
    pub origins: Vec<(String, FakeOrigin)>,
    /// The config with real addresses.
    pub config: String,
}

impl DemoFleet {
    /// Starts one origin per `{{id}}` placeholder in the demo config.
    pub async fn start() -> std::io::Result<Self> {
        let mut config = DEMO_CONFIG.to_string();
        let mut origins = Vec::new();
        for id in ["local-gpu", "edge-small", "cloud-eu", "cloud-us"] {
            let origin = FakeOrigin::start(id, Script::demo()).await?;
            config = config.replace(&format!("{{{{{id}}}}}"), &origin.url());
            origins.push((id.to_string(), origin));
        }
        Ok(Self { origins, config })
    }
}

/// Serves `POST /stop/<id>` and `POST /start/<id>` for the demo origins.
pub async fn control_server(
    listener: TcpListener,
    fleet: std::sync::Arc<tokio::sync::Mutex<DemoFleet>>,
) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let fleet = fleet.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let fleet = fleet.clone();
                async move {
                    let path = req.uri().path().to_string();
                    let mut fleet = fleet.lock().await;
                    let (verb, id) = path.trim_start_matches('/').split_once('/').unwrap_or(("", ""));
                    let reply = match fleet.origins.iter_mut().find(|(n, _)| n == id) {
                        None => format!("no demo origin named `{id}`\n"),
                        Some((_, o)) if verb == "stop" => {
                            o.stop();
                            format!("demo origin {id} stopped: connections to it are now refused\n")
                        }
                        Some((_, o)) if verb == "start" => match o.restart().await {
                            Ok(()) => format!("demo origin {id} is listening again\n"),
                            Err(e) => format!("demo origin {id} could not restart: {e}\n"),
                        },
                        Some(_) => "use POST /stop/<id> or /start/<id>\n".to_string(),
                    };
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(reply))))
                }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

/// A certificate the demo made for itself, and the `server.tls` lines that
/// serve it. Dropping it removes its folder, key and all: the demo's key
/// does not outlive the demo, but for a SIGKILL or a crash.
pub struct DemoCertificate {
    /// The certificate's PEM file, for `curl --cacert`.
    pub cert: String,
    /// `  tls: ...` lines to put under the config's `server:`.
    pub config: String,
    dir: std::path::PathBuf,
}

impl Drop for DemoCertificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Makes a self-signed certificate for `localhost` and `127.0.0.1` (rcgen)
/// in a temporary folder of this process. For the demo only: a real box
/// serves a certificate a CA signed (docs/tls.md).
pub fn certificate() -> anyhow::Result<DemoCertificate> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    // A new folder with a name no one can guess, that only this user can
    // enter: one that is there already (someone else's) is never used.
    let mut random = [0u8; 8];
    getrandom::getrandom(&mut random).map_err(|e| anyhow::anyhow!("no randomness for the folder's name: {e}"))?;
    let dir = std::env::temp_dir().join(format!("edge-router-demo-tls-{}-{}", std::process::id(), crate::hex(&random)));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    // From here on, a failure removes the folder too.
    let mut made = DemoCertificate { cert: String::new(), config: String::new(), dir };
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(names)?.self_signed(&key)?;
    let (cert_file, key_file) = (made.dir.join("localhost.pem"), made.dir.join("localhost.key"));
    std::fs::write(&cert_file, cert.pem())?;
    // The key is readable by this user only, whatever the umask.
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&key_file)?;
    std::io::Write::write_all(&mut file, key.serialize_pem().as_bytes())?;
    let (cert, key) = (cert_file.display().to_string(), key_file.display().to_string());
    made.config = format!("  tls: {{certificates: [{{cert: \"{cert}\", key: \"{key}\"}}]}}\n");
    made.cert = cert;
    Ok(made)
}
