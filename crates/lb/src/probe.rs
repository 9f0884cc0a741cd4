//! One probe attempt against a backend, and what it saw: `Success`, `Failure` (an answer that says
//! "unhealthy") or `Silence` (no answer).
//!
//! The classification is CONTRACT §5's: a 2xx is success, any other status or a connection accepted then
//! reset is a failure, refused and timed out are silence. AppHealthHttp reads the Application Health
//! extension's JSON body, which decides over the status code. With `tls` (Azure's Https) the same
//! exchange runs over TLS, the certificate unverified; a failed handshake is a failure. It neither
//! schedules probes nor judges health (`health.rs` and `galleon_core::health`).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use galleon_core::health::Outcome;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{self, ClientConfig, DigitallySignedStruct, SignatureScheme};

use crate::config::{HealthCheck, ProbeProtocol};

/// The longest a probe waits, whatever its interval.
const MAX_TIMEOUT: Duration = Duration::from_secs(5);
/// The most of a health body read (Application Health answers a few dozen bytes).
const MAX_BODY: usize = 16 * 1024;

/// What the probe saw, and a word on why (for `/health`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) outcome: Outcome,
    pub(crate) detail: String,
}

fn seen(outcome: Outcome, detail: impl Into<String>) -> Seen {
    Seen { outcome, detail: detail.into() }
}

/// How long one attempt may take: its interval, at most 5 s.
pub(crate) fn probe_timeout(check: &HealthCheck) -> Duration {
    Duration::from_millis(check.interval_ms).min(MAX_TIMEOUT)
}

/// Probe once.
pub(crate) async fn probe(check: &HealthCheck) -> Seen {
    let addr = SocketAddr::new(check.address, check.port);
    let deadline = Instant::now() + probe_timeout(check);
    let stream = match timeout_at(deadline, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return seen(Outcome::Silence, format!("connect: {e}")),
        Err(_) => return seen(Outcome::Silence, "connect timed out"),
    };
    match check.protocol {
        ProbeProtocol::Tcp => seen(Outcome::Success, "connected"),
        ProbeProtocol::Http | ProbeProtocol::AppHealthHttp => {
            let app_health = check.protocol == ProbeProtocol::AppHealthHttp;
            let path = check.path.as_deref().unwrap_or("/");
            let _ = stream.set_nodelay(true);
            let exchange = async {
                if !check.tls {
                    return http_get(stream, addr, path, app_health).await;
                }
                let connector = match tls_connector() {
                    Ok(c) => c,
                    Err(e) => return seen(Outcome::Failure, format!("no TLS client: {e}")),
                };
                match connector.connect(ServerName::IpAddress(addr.ip().into()), stream).await {
                    Ok(tls) => http_get(tls, addr, path, app_health).await,
                    Err(e) => seen(Outcome::Failure, format!("TLS handshake: {e}")),
                }
            };
            match timeout_at(deadline, exchange).await {
                Ok(s) => s,
                // Accepted, then nothing: the app hangs. Silence, so a slow starter keeps its grace.
                Err(_) => seen(Outcome::Silence, "no answer in time"),
            }
        }
    }
}

/// One TLS client for every Https probe: the platform's crypto provider, any certificate accepted.
fn tls_connector() -> Result<TlsConnector, String> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map(|b| b.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider))))
            .map(|b| Arc::new(b.with_no_client_auth()))
            .map_err(|e| e.to_string())
    });
    config.clone().map(TlsConnector::from)
}

/// Accepts any server certificate, but still checks the handshake's signatures, so the peer holds the
/// key of the certificate it shows.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn http_get<S>(stream: S, addr: SocketAddr, path: &str, app_health: bool) -> Seen
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = match http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await {
        Ok(x) => x,
        Err(e) => return seen(Outcome::Failure, format!("handshake: {e}")),
    };
    let conn = tokio::spawn(conn);
    let request = Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::CONNECTION, "close")
        .header(hyper::header::USER_AGENT, "galleon-probe")
        .body(Empty::new());
    let request = match request {
        Ok(r) => r,
        Err(e) => return seen(Outcome::Failure, format!("bad probe request: {e}")),
    };
    let result = match sender.send_request(request).await {
        // An answer that is not one: accepted, then reset or closed.
        Err(e) => seen(Outcome::Failure, format!("no HTTP answer: {e}")),
        Ok(response) => {
            let status = response.status();
            let by_status = if status.is_success() { Outcome::Success } else { Outcome::Failure };
            if !app_health {
                seen(by_status, format!("HTTP {}", status.as_u16()))
            } else {
                match Limited::new(response.into_body(), MAX_BODY).collect().await {
                    Ok(body) => app_health_outcome(&body.to_bytes())
                        .map(|(o, state)| seen(o, format!("HTTP {} ApplicationHealthState {state}", status.as_u16())))
                        .unwrap_or_else(|| seen(by_status, format!("HTTP {}", status.as_u16()))),
                    Err(e) => seen(Outcome::Failure, format!("HTTP {} body: {e}", status.as_u16())),
                }
            }
        }
    };
    conn.abort();
    result
}

/// The Application Health extension's verdict, when the body carries one it understands.
pub(crate) fn app_health_outcome(body: &[u8]) -> Option<(Outcome, &'static str)> {
    #[derive(serde::Deserialize)]
    struct Rich {
        #[serde(rename = "ApplicationHealthState")]
        state: String,
    }
    let rich: Rich = serde_json::from_slice(body).ok()?;
    // Azure compares these case-insensitively.
    if rich.state.eq_ignore_ascii_case("healthy") {
        Some((Outcome::Success, "Healthy"))
    } else if rich.state.eq_ignore_ascii_case("unhealthy") {
        Some((Outcome::Failure, "Unhealthy"))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_health_body_decides() {
        assert_eq!(
            app_health_outcome(br#"{"ApplicationHealthState": "Healthy"}"#).map(|x| x.0),
            Some(Outcome::Success)
        );
        assert_eq!(
            app_health_outcome(br#"{"ApplicationHealthState":"unhealthy","x":1}"#).map(|x| x.0),
            Some(Outcome::Failure)
        );
        assert_eq!(app_health_outcome(br#"{"ApplicationHealthState": "Busy"}"#), None);
        assert_eq!(app_health_outcome(b"ok"), None);
    }
}
