//! `[mqtt]` settings -> the client's connection options: broker, TLS, login, last will.

use super::topics::{with_hostname, Topics};
use crate::settings::schema::broker_url;
use crate::settings::typed::Mqtt;
use rumqttc::{LastWill, MqttOptions, QoS, TlsConfiguration, Transport};
use std::time::Duration;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// What `<topic>/status` says once visiond is gone: the broker's last will, and a clean stop.
pub const OFFLINE: &str = r#"{"state":"offline"}"#;

/// A dead connection is noticed within this (the broker drops us after 1.5 times it).
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Results with many boxes and the discovery configs outgrow the client's 10 KiB default.
const MAX_PACKET: usize = 1 << 20;

/// The client's options, or why they cannot be built (a CA file that cannot be read, ...).
pub fn build(settings: &Mqtt, topics: &Topics) -> Result<MqttOptions, String> {
    let (tls, host, port) = broker_url(&settings.url)?;
    let mut options = MqttOptions::new(with_hostname(&settings.client_id), host, port);
    options
        .set_keep_alive(KEEP_ALIVE)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_last_will(LastWill::new(
            topics.status(),
            OFFLINE,
            QoS::AtLeastOnce,
            settings.retain_status,
        ));
    if !settings.username.is_empty() || !settings.password.is_empty() {
        options.set_credentials(&settings.username, &settings.password);
    }
    if tls {
        let roots = trusted_roots(&settings.ca_file)?;
        let config = ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            config.into(),
        )));
    }
    Ok(options)
}

/// The CAs in `ca_file`, or the system's when it is empty.
fn trusted_roots(ca_file: &str) -> Result<RootCertStore, String> {
    let certificates = if ca_file.is_empty() {
        rustls_native_certs::load_native_certs()
            .map_err(|e| format!("cannot read the system's CA certificates: {e}"))?
    } else {
        let pem = std::fs::read(ca_file).map_err(|e| format!("mqtt.ca_file {ca_file}: {e}"))?;
        rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("mqtt.ca_file {ca_file}: {e}"))?
    };
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        let from = if ca_file.is_empty() {
            "the system"
        } else {
            ca_file
        };
        return Err(format!("no CA certificate found in {from}"));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::values::Values;

    fn defaults() -> Mqtt {
        Values::defaults().to_settings().mqtt
    }

    #[test]
    fn the_default_broker_is_plain_mqtt_on_localhost_with_a_retained_will() {
        let settings = defaults();
        let topics = Topics::new(&settings.topic);
        let options = build(&settings, &topics).unwrap();
        assert_eq!(options.broker_address(), ("localhost".to_owned(), 1883));
        let will = options.last_will().unwrap();
        assert_eq!(will.topic, topics.status());
        assert!(will.retain);
        assert!(options.credentials().is_none());
        assert!(!options.client_id().contains('<'));
    }

    #[test]
    fn a_missing_ca_file_is_a_clear_error() {
        let settings = Mqtt {
            url: "mqtts://broker".into(),
            ca_file: "/nonexistent/ca.pem".into(),
            ..defaults()
        };
        let error = build(&settings, &Topics::new("t")).unwrap_err();
        assert!(
            error.starts_with("mqtt.ca_file /nonexistent/ca.pem:"),
            "{error}"
        );
    }
}
