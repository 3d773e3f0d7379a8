//! The sd_notify protocol, for the `Type=notify` unit with a watchdog: one datagram per
//! message to `$NOTIFY_SOCKET`. Outside systemd (no socket set) every call does nothing.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

/// Sends one message ("READY=1", "STOPPING=1", "WATCHDOG=1", "STATUS=...").
pub fn notify(message: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&path.to_string_lossy(), message) {
        tracing::warn!("sd_notify {message:?}: {e}");
    }
}

fn send(path: &str, message: &str) -> std::io::Result<()> {
    // A leading '@' names a socket in the abstract namespace.
    let address = match path.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())?
        }
        None => SocketAddr::from_pathname(path)?,
    };
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(message.as_bytes(), &address)?;
    Ok(())
}

/// Feeds systemd's watchdog from a loop that must keep turning (the pipeline thread): at most
/// twice per `WATCHDOG_USEC`, so a loop that hangs stops the pings and systemd restarts us.
pub struct Watchdog {
    interval: Option<Duration>,
    last: Option<Instant>,
}

impl Watchdog {
    pub fn from_env() -> Watchdog {
        Watchdog::with_period(watchdog_period())
    }

    fn with_period(period: Option<Duration>) -> Watchdog {
        Watchdog {
            interval: period.map(|period| period / 2),
            last: None,
        }
    }

    /// Pings if half the watchdog period has passed since the last ping; returns whether it did.
    pub fn feed(&mut self) -> bool {
        let Some(interval) = self.interval else {
            return false;
        };
        if self.last.is_some_and(|at| at.elapsed() < interval) {
            return false;
        }
        self.last = Some(Instant::now());
        notify("WATCHDOG=1");
        true
    }
}

/// The watchdog period systemd set for this process, if it set one for us (`WATCHDOG_PID`
/// unset or ours).
fn watchdog_period() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID") {
        if pid.to_string_lossy().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_period_never_pings() {
        let mut watchdog = Watchdog::with_period(None);
        assert!(!watchdog.feed());
    }

    #[test]
    fn pings_at_most_twice_per_period() {
        let mut watchdog = Watchdog::with_period(Some(Duration::from_millis(200)));
        assert!(watchdog.feed(), "the first turn pings");
        assert!(!watchdog.feed(), "a turn right after does not");
        std::thread::sleep(Duration::from_millis(120));
        assert!(watchdog.feed(), "half the period later it pings again");
    }

    #[test]
    fn messages_reach_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        send(path.to_str().unwrap(), "READY=1").unwrap();
        let mut buffer = [0u8; 64];
        let n = receiver.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"READY=1");
    }
}
