//! Which address the server may listen on. Loopback (127.0.0.0/8, ::1, `localhost`) is
//! always allowed; a network address only with TLS configured (`[http] tls_cert` and
//! `tls_key`): the review screen shows radiographs and takes logins, which must never cross
//! a network in clear text.

use std::net::{SocketAddr, ToSocketAddrs};

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(
        "invalid listen address {listen:?}: {reason} (expected HOST:PORT, e.g. 127.0.0.1:8470)"
    )]
    Invalid { listen: String, reason: String },
    #[error(
        "refusing to listen on {addr} (from {listen:?}): not a loopback address, and no TLS \
         is configured. The review screen shows radiographs and takes logins, so without TLS \
         it listens on 127.0.0.1 / ::1 only. To serve it on the network, set `tls_cert` and \
         `tls_key` (PEM files) under [http] in the configuration and create password \
         accounts (`fracturectl user add NAME --role reviewer --password`)"
    )]
    NotLoopback { listen: String, addr: SocketAddr },
}

/// The address to bind: the first `listen` resolves to, every one of them loopback unless
/// `tls` is configured.
pub fn resolve(listen: &str, tls: bool) -> Result<SocketAddr, ListenError> {
    let invalid = |reason: String| ListenError::Invalid { listen: listen.to_string(), reason };
    let addrs: Vec<SocketAddr> = match listen.parse::<SocketAddr>() {
        Ok(a) => vec![a],
        Err(_) => listen.to_socket_addrs().map_err(|e| invalid(e.to_string()))?.collect(),
    };
    let first = *addrs.first().ok_or_else(|| invalid("resolves to no address".into()))?;
    if !tls && let Some(addr) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        return Err(ListenError::NotLoopback { listen: listen.to_string(), addr: *addr });
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only_unless_allowed() {
        for ok in ["127.0.0.1:8470", "[::1]:8470", "127.0.0.2:0", "localhost:8470"] {
            let addr = resolve(ok, false).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert!(addr.ip().is_loopback());
        }
        for refused in ["0.0.0.0:8470", "[::]:8470", "192.168.1.10:8470"] {
            let e = resolve(refused, false).expect_err(refused);
            assert!(matches!(e, ListenError::NotLoopback { .. }), "{refused}: {e}");
            assert!(e.to_string().contains("tls_cert"), "{e}");
            assert!(resolve(refused, true).is_ok(), "{refused} allowed with TLS");
        }
        for bad in ["", "8470", "127.0.0.1", "127.0.0.1:99999"] {
            assert!(matches!(resolve(bad, false), Err(ListenError::Invalid { .. })), "{bad:?}");
        }
    }
}
