//! Which `Host` values are this appliance: IP literals, `localhost`, the machine's hostname
//! (and `<hostname>.local`), and the names in `server.allowed_hosts`. Any other name is a
//! DNS-rebinding page talking to us through the user's browser, with its Origin to match.

use std::net::IpAddr;

pub struct Hosts {
    hostname: String,
}

impl Hosts {
    pub fn of_this_machine() -> Hosts {
        Hosts {
            hostname: crate::hostname::hostname().to_ascii_lowercase(),
        }
    }

    /// Whether `host` (a Host header's host, without the port) names this appliance.
    pub fn allows(&self, host: &str, listed: &[String]) -> bool {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<IpAddr>().is_ok() {
            return true;
        }
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        let own = !self.hostname.is_empty()
            && (name == self.hostname || name == format!("{}.local", self.hostname));
        name == "localhost"
            || own
            || listed
                .iter()
                .any(|l| l.trim_end_matches('.').eq_ignore_ascii_case(&name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_of_this_machine_pass() {
        let hosts = Hosts {
            hostname: "camera1".into(),
        };
        let listed = vec!["visiond.example.org".to_owned()];
        for good in [
            "127.0.0.1",
            "192.168.1.20",
            "[::1]",
            "localhost",
            "Camera1",
            "camera1.local",
            "visiond.example.org.",
        ] {
            assert!(hosts.allows(good, &listed), "{good}");
        }
        for bad in ["evil.example", "camera1.evil.example", "localhost.evil", ""] {
            assert!(!hosts.allows(bad, &listed), "{bad}");
        }
    }
}
