//! What a configuration reload (SIGHUP, `--signal reload`) may change while the server runs,
//! and nats-server's error for what it may not: `config reload not supported for <Field>:
//! old=<old>, new=<new>`, naming nats-server's option. Nothing is applied unless every
//! change is reloadable.
//!
//! Reloadable: the authorization (users, passwords, tokens, nkeys, permissions,
//! `no_auth_user`, its timeout) and the logging options (`debug`, `trace`, `log_file`), which
//! the binary applies. Everything else needs a restart.

use super::{Config, ConfigError};

/// One reloadable change, for the log (`authorization`, `debug: true`).
pub type Change = String;

/// Compares the running configuration with a newly read one: the changes to apply, or the
/// first change that cannot be applied live.
pub fn plan(old: &Config, new: &Config) -> Result<Vec<Change>, ConfigError> {
    let mut changes = Vec::new();
    macro_rules! fixed {
        ($($field:ident => $go:literal),* $(,)?) => {
            $(
                if old.$field != new.$field {
                    return Err(ConfigError::Reload(format!(
                        "config reload not supported for {}: old={:?}, new={:?}",
                        $go, old.$field, new.$field
                    )));
                }
            )*
        };
    }
    fixed!(
        host => "Host",
        port => "Port",
        server_name => "ServerName",
        http_port => "HTTPPort",
        http_host => "HTTPHost",
        max_payload => "MaxPayload",
        max_control_line => "MaxControlLine",
        max_pending => "MaxPending",
        write_deadline => "WriteDeadline",
        max_connections => "MaxConn",
        max_subs => "MaxSubs",
        ping_interval => "PingInterval",
        ping_max => "MaxPingsOut",
        auth_timeout => "AuthTimeout",
        lame_duck_duration => "LameDuckDuration",
        lame_duck_grace_period => "LameDuckGracePeriod",
        jetstream => "JetStream",
        cluster => "Cluster",
        tls => "TLSConfig",
        allow_non_tls => "AllowNonTLS",
        websocket => "Websocket",
        accounts => "Accounts",
        system_account => "SystemAccount",
        trust => "TrustedOperators",
        pid_file => "PidFile",
        ports_file_dir => "PortsFileDir",
        max_closed_clients => "MaxClosedClients",
    );
    if old.auth != new.auth {
        changes.push("authorization".to_string());
    }
    if old.debug != new.debug {
        changes.push(format!("debug: {}", new.debug));
    }
    if old.trace != new.trace {
        changes.push(format!("trace: {}", new.trace));
    }
    if old.log_file != new.log_file {
        changes.push(format!("log_file: {:?}", new.log_file));
    }
    if old.log_size_limit != new.log_size_limit {
        changes.push(format!("logfile_size_limit: {}", new.log_size_limit));
    }
    if old.log_max_files != new.log_max_files {
        changes.push(format!("logfile_max_num: {}", new.log_max_files));
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_and_logging_reload_the_rest_does_not() {
        let old = Config::default();
        let mut new = old.clone();
        new.auth.token = Some("s3cret".into());
        new.debug = true;
        assert_eq!(plan(&old, &new).unwrap(), ["authorization", "debug: true"]);
        let mut moved = old.clone();
        moved.port = 4333;
        let e = plan(&old, &moved).unwrap_err().to_string();
        assert_eq!(
            e,
            "config reload not supported for Port: old=4222, new=4333"
        );
        assert!(plan(&old, &old.clone()).unwrap().is_empty());
    }
}
