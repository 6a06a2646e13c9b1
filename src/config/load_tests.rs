//! Tests of the config-file loader (`load`): every key, its aliases and its errors.

use super::*;
use crate::config::{parse_route_url, ClusterConfig, DEFAULT_CLUSTER_PORT};

fn load(text: &str) -> Config {
    match from_conf_text(text, None) {
        Ok(cfg) => cfg,
        Err(e) => panic!("load failed: {e}\n{text}"),
    }
}

/// The key named by an `Invalid` error.
fn bad_key(text: &str) -> String {
    match from_conf_text(text, None) {
        Err(ConfigError::Invalid { key, .. }) => key,
        other => panic!("expected an invalid-value error, got {other:?}"),
    }
}

#[test]
fn durations() {
    let cases = [
        ("0", Duration::ZERO),
        ("2m", Duration::from_secs(120)),
        ("1h30m", Duration::from_secs(5400)),
        ("100ms", Duration::from_millis(100)),
        ("1.5s", Duration::from_millis(1500)),
        ("10us", Duration::from_micros(10)),
        ("10µs", Duration::from_micros(10)),
        ("250ns", Duration::from_nanos(250)),
        (".5s", Duration::from_millis(500)),
        ("+3s", Duration::from_secs(3)),
        ("1h0m0.25s", Duration::from_millis(3_600_250)),
    ];
    for (text, want) in cases {
        assert_eq!(parse_duration(text), Some(want), "{text}");
    }
    for bad in ["", "5", "-1s", "1x", "s", "1.s.", "1..5s", "ms10", "1 s"] {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
}

#[test]
fn defaults_when_empty() {
    assert_eq!(load("# nothing\n"), Config::default());
}

#[test]
fn listen_keys() {
    let cfg = load("host: 127.0.0.1\nport: 4333");
    assert_eq!((cfg.host.as_str(), cfg.port), ("127.0.0.1", 4333));
    let cfg = load("net: '::1'\nport: -1");
    assert_eq!((cfg.host.as_str(), cfg.port), ("::1", 0));
    let cfg = load("listen: 10.0.0.1:5222");
    assert_eq!((cfg.host.as_str(), cfg.port), ("10.0.0.1", 5222));
    let cfg = load("host: h\nlisten: \":6222\"");
    assert_eq!((cfg.host.as_str(), cfg.port), ("h", 6222));
    let cfg = load("listen: 7222");
    assert_eq!(cfg.port, 7222);
    let cfg = load("listen: \"[::1]:4222\"");
    assert_eq!((cfg.host.as_str(), cfg.port), ("::1", 4222));
    let cfg = load("LISTEN: localhost:1\nPort: 2");
    assert_eq!((cfg.host.as_str(), cfg.port), ("localhost", 2));
    assert_eq!(bad_key("port: 70000"), "port");
    assert_eq!(bad_key("port: abc"), "port");
    assert_eq!(bad_key("port: true"), "port");
    assert_eq!(bad_key("listen: \"host:x\""), "listen");
    assert_eq!(bad_key("host: [1]"), "host");
}

#[test]
fn name_and_monitoring() {
    let cfg = load("server_name: alpha\nhttp: 127.0.0.1:8222");
    assert_eq!(cfg.server_name.as_deref(), Some("alpha"));
    assert_eq!(
        (cfg.monitor_host(), cfg.http_port),
        ("127.0.0.1", Some(8222))
    );
    assert_eq!(load("name: beta").server_name.as_deref(), Some("beta"));
    assert_eq!(load("monitor: 9000").http_port, Some(9000));
    assert_eq!(load("http_port: 8223").http_port, Some(8223));
    assert_eq!(load("http_port: -1").http_port, Some(0));
    assert_eq!(bad_key("http: {}"), "http");
    assert_eq!(bad_key("http_port: 99999"), "http_port");
}

#[test]
fn limits() {
    let cfg = load(
        "max_payload: 2MB\nmax_control_line: \"8KB\"\nmax_pending: 128MiB\n\
         max_connections: 100\nmax_subscriptions: 10\nping_max: 5",
    );
    assert_eq!(cfg.max_payload, 2 << 20);
    assert_eq!(cfg.max_control_line, 8 << 10);
    assert_eq!(cfg.max_pending, 128 << 20);
    assert_eq!(cfg.max_connections, 100);
    assert_eq!(cfg.max_subs, 10);
    assert_eq!(cfg.ping_max, 5);
    let cfg = load("max_conn: 7\nmax_subs: 8\nmax_payload: 1000");
    assert_eq!(
        (cfg.max_connections, cfg.max_subs, cfg.max_payload),
        (7, 8, 1000)
    );
    assert_eq!(bad_key("max_payload: 0"), "max_payload");
    assert_eq!(bad_key("max_payload: -5"), "max_payload");
    assert_eq!(bad_key("max_payload: \"lots\""), "max_payload");
    assert_eq!(bad_key("max_connections: -1"), "max_connections");
    assert_eq!(bad_key("ping_max: 1.5"), "ping_max");
}

#[test]
fn timing() {
    let cfg = load(
        "ping_interval: \"30s\"\nwrite_deadline: \"2s\"\nlame_duck_duration: \"1m\"\n\
         lame_duck_grace_period: 5",
    );
    assert_eq!(cfg.ping_interval, Duration::from_secs(30));
    assert_eq!(cfg.write_deadline, Duration::from_secs(2));
    assert_eq!(cfg.lame_duck_duration, Duration::from_secs(60));
    assert_eq!(cfg.lame_duck_grace_period, Duration::from_secs(5));
    // Bare integers are seconds; unquoted `100ms` lexes as a string.
    assert_eq!(
        load("ping_interval: 20").ping_interval,
        Duration::from_secs(20)
    );
    assert_eq!(
        load("write_deadline: 100ms").write_deadline,
        Duration::from_millis(100)
    );
    assert_eq!(
        load("write_deadline: 0.5").write_deadline,
        Duration::from_millis(500)
    );
    assert_eq!(bad_key("ping_interval: \"soon\""), "ping_interval");
    assert_eq!(bad_key("ping_interval: -3"), "ping_interval");
}

#[test]
fn logging_and_files() {
    let cfg = load(
        "debug: true\ntrace: on\nlog_file: /tmp/c.log\npid_file: \"/tmp/c.pid\"\n\
         ports_file_dir: /tmp",
    );
    assert!(cfg.debug && cfg.trace);
    assert_eq!(cfg.log_file, Some(PathBuf::from("/tmp/c.log")));
    assert_eq!(cfg.pid_file, Some(PathBuf::from("/tmp/c.pid")));
    assert_eq!(cfg.ports_file_dir, Some(PathBuf::from("/tmp")));
    assert!(!load("debug: \"false\"").debug);
    assert_eq!(bad_key("debug: 1"), "debug");
    assert_eq!(bad_key("trace: maybe"), "trace");
    assert_eq!(bad_key("log_file: \"\""), "log_file");
}

/// The error a config text fails with.
fn error(text: &str) -> ConfigError {
    match from_conf_text(text, None) {
        Err(e) => e,
        Ok(_) => panic!("expected an error for:\n{text}"),
    }
}

#[test]
fn unknown_keys_are_errors_naming_them() {
    for (text, key) in [
        ("bogus_key: 1", "bogus_key"),
        ("port: 1\nnonsense: {}", "nonsense"),
        ("jetstream { bogus: 1 }", "jetstream.bogus"),
        ("authorization { bogus: 1 }", "authorization.bogus"),
        (
            "authorization { users: [ {user: a, password: p, bogus: 1} ] }",
            "authorization.users[0].bogus",
        ),
        (
            "authorization { users: [ {user: a, permissions: {bogus: 1}} ] }",
            "authorization.users[0].permissions.bogus",
        ),
    ] {
        let e = error(text);
        assert!(
            matches!(&e, ConfigError::Unknown { key: k } if k == key),
            "{text}: {e:?}"
        );
        assert_eq!(e.to_string(), format!("unknown field \"{key}\""));
    }
}

#[test]
fn unimplemented_blocks_refuse_to_start() {
    for (text, key) in [
        (
            "tls { cert_file: a.pem, key_file: k.pem, cipher_suites: [x] }",
            "tls.cipher_suites",
        ),
        (
            "websocket { port: 8080, no_tls: true, jwt_cookie: my_jwt }",
            "websocket.jwt_cookie",
        ),
        (
            "cluster { name: c, tls { cert_file: a, key_file: b, insecure: true } }",
            "cluster.tls.insecure",
        ),
        ("cluster { pool_size: 3 }", "cluster.pool_size"),
        ("cluster { compression: s2_auto }", "cluster.compression"),
        ("cluster { accounts: [A] }", "cluster.accounts"),
        (
            "cluster { permissions { import: \">\" } }",
            "cluster.permissions",
        ),
        (
            "cluster { authorization { user: u, password: p, token: t } }",
            "cluster.authorization.token",
        ),
        ("gateway { name: g }", "gateway"),
        (
            "leafnodes { port: 7422, compression: s2_auto }",
            "leafnodes.compression",
        ),
        (
            "leafnodes { remotes: [ { url: \"nats-leaf://h:7422\", credentials: x } ] }",
            "leafnodes.remotes[0].credentials",
        ),
        ("mqtt { port: 1883 }", "mqtt"),
        (
            "accounts { A: { users: [ {user: u, password: p} ], mappings: {} } }",
            "accounts.A.mappings",
        ),
        (
            "resolver: { type: full, dir: ./jwt }",
            "resolver (other than MEMORY)",
        ),
        ("jetstream { key: secret }", "jetstream.key"),
        (
            "authorization { users: [ {user: a, password: p, account: A} ] }",
            "authorization.users[0].account",
        ),
        (
            "authorization { auth_callout { issuer: X } }",
            "authorization.auth_callout",
        ),
    ] {
        let e = error(text);
        assert!(
            matches!(&e, ConfigError::Unsupported { key: k } if k == key),
            "{text}: {e:?}"
        );
        assert_eq!(e.to_string(), format!("{key} is not supported yet"));
    }
    // Keys that change nothing for safety or data only warn.
    let cfg = load("server_tags: [a]\nlogtime: false\nport: 1\njetstream { strict: true }");
    assert_eq!(cfg.port, 1);
}

#[test]
fn no_auth_user_must_exist() {
    let cfg = load("authorization { users: [ {user: a, password: p} ] }\nno_auth_user: a");
    assert_eq!(cfg.auth.no_auth_user.as_deref(), Some("a"));
    assert!(cfg.auth.required() && !cfg.auth.credentials_required());
    let e = error("authorization { users: [ {user: a, password: p} ] }\nno_auth_user: nosuch");
    assert!(e.to_string().contains(
        "no_auth_user: \"nosuch\" not present as user or nkey in authorization block or account configuration"
    ), "{e}");
    let e = error("no_auth_user: nosuch");
    assert!(
        e.to_string()
            .contains("no_auth_user: \"nosuch\" present, but users/nkeys are not defined"),
        "{e}"
    );
}

#[test]
fn default_and_response_permissions() {
    let cfg = load(
        r#"authorization {
  default_permissions: { publish: "pub.>", subscribe: { deny: "secret.>" } }
  users: [
    { user: a, password: p }
    { user: svc, password: p, permissions: { subscribe: "req.>", allow_responses: true } }
    { user: svc2, password: p, permissions: { allow_responses: { max: 2, expires: "1s" } } }
    { user: nope, password: p, permissions: { allow_responses: false } }
    { user: ws, password: p, allowed_connection_types: ["websocket"] }
  ]
}"#,
    );
    let d = cfg.auth.default_permissions.as_ref().expect("defaults");
    assert_eq!(d.publish.as_ref().unwrap().allow, ["pub.>"]);
    assert_eq!(d.subscribe.as_ref().unwrap().deny, ["secret.>"]);
    let u = &cfg.auth.users;
    assert_eq!(
        u[1].permissions.as_ref().unwrap().allow_responses,
        Some(ResponsePermission::default())
    );
    assert_eq!(
        u[2].permissions.as_ref().unwrap().allow_responses,
        Some(ResponsePermission {
            max: 2,
            expires: Duration::from_secs(1)
        })
    );
    assert_eq!(u[3].permissions.as_ref().unwrap().allow_responses, None);
    assert_eq!(
        u[4].allowed_connection_types.as_deref(),
        Some(&["WEBSOCKET".to_string()][..])
    );
}

#[test]
fn single_user_and_token() {
    let cfg = load("authorization {\n  user: alice\n  password: s3cret\n  timeout: 1.5\n}");
    assert_eq!(cfg.auth.user.as_deref(), Some("alice"));
    assert_eq!(cfg.auth.password.as_deref(), Some("s3cret"));
    assert_eq!(cfg.auth.timeout, Some(Duration::from_millis(1500)));
    assert_eq!(cfg.auth_timeout, Duration::from_millis(1500));
    assert!(cfg.auth.required());
    let cfg = load("authorization: { username = bob, pass = 'x' }");
    assert_eq!(cfg.auth.user.as_deref(), Some("bob"));
    assert_eq!(cfg.auth.password.as_deref(), Some("x"));
    let cfg = load("TOK: abc\nauthorization { token: $TOK, timeout: \"3s\" }");
    assert_eq!(cfg.auth.token.as_deref(), Some("abc"));
    assert_eq!(cfg.auth.timeout, Some(Duration::from_secs(3)));
    let cfg = load("authorization { token: 12345 }");
    assert_eq!(cfg.auth.token.as_deref(), Some("12345"));
    assert_eq!(bad_key("authorization: 5"), "authorization");
    assert_eq!(bad_key("authorization { user: [x] }"), "authorization.user");
    assert_eq!(
        bad_key("authorization { timeout: never }"),
        "authorization.timeout"
    );
}

#[test]
fn users_and_permissions() {
    let text = r#"
authorization {
  users: [
{ user: admin, password: "$2a$11$abc" }
{ username: pub, pass: p, permissions: { publish: "orders.>", subscribe: ["_INBOX.>", "x"] } }
{ user: mixed, password: m, permission {
    publish { allow: ["a.*"], deny: "a.secret" }
    subscribe { deny: [">"] }
    allow_responses: true
} }
  ]
}"#;
    let cfg = load(text);
    let users = &cfg.auth.users;
    assert_eq!(users.len(), 3);
    assert_eq!(users[0].user, "admin");
    assert_eq!(users[0].password, "$2a$11$abc");
    assert_eq!(users[0].permissions, None);
    let p1 = users[1].permissions.as_ref().unwrap();
    assert_eq!(p1.publish.as_ref().unwrap().allow, ["orders.>"]);
    assert_eq!(p1.subscribe.as_ref().unwrap().allow, ["_INBOX.>", "x"]);
    assert!(p1.subscribe.as_ref().unwrap().deny.is_empty());
    let p2 = users[2].permissions.as_ref().unwrap();
    assert_eq!(
        p2.publish,
        Some(SubjectPermission {
            allow: vec!["a.*".into()],
            deny: vec!["a.secret".into()]
        })
    );
    assert_eq!(p2.subscribe.as_ref().unwrap().deny, [">"]);
    assert!(cfg.auth.required());
}

#[test]
fn bad_users_name_the_path() {
    let key =
        bad_key("authorization { users: [ {user: a, password: b}, {user: c, password: [1]} ] }");
    assert_eq!(key, "authorization.users[1].password");
    let key = bad_key("authorization { users: [ {password: b} ] }");
    assert_eq!(key, "authorization.users[0].user");
    let key = bad_key("authorization { users: [ 5 ] }");
    assert_eq!(key, "authorization.users[0]");
    let key = bad_key("authorization { users: { user: a } }");
    assert_eq!(key, "authorization.users");
    let key = bad_key("authorization { users: [ {user: a, permissions: {publish: [1]}} ] }");
    assert_eq!(key, "authorization.users[0].permissions.publish[0]");
    let key =
        bad_key("authorization { users: [ {user: a, permissions: {subscribe: {deny: true}}} ] }");
    assert_eq!(key, "authorization.users[0].permissions.subscribe.deny");
    let key = bad_key("authorization { token: t, users: [ {user: a} ] }");
    assert_eq!(key, "authorization");
}

#[test]
fn jetstream_forms() {
    assert!(load("jetstream: enabled").jetstream.enabled);
    assert!(load("jetstream: true").jetstream.enabled);
    assert!(load("jetstream {}").jetstream.enabled);
    assert!(!load("jetstream: disabled").jetstream.enabled);
    assert!(!load("jetstream: false").jetstream.enabled);
    assert!(!load("jetstream { enabled: false }").jetstream.enabled);
    assert_eq!(bad_key("jetstream: sometimes"), "jetstream");
    assert_eq!(bad_key("jetstream: 1"), "jetstream");
}

#[test]
fn jetstream_block() {
    let cfg = load(
        "jetstream {\n  store_dir: /var/lib/causeway\n  max_mem: 1G\n  max_file_store: 10GiB\n\
         \x20 sync: always\n}",
    );
    let js = &cfg.jetstream;
    assert!(js.enabled);
    assert_eq!(js.store_dir, PathBuf::from("/var/lib/causeway"));
    assert_eq!(js.max_memory, 1_000_000_000);
    assert_eq!(js.max_file, 10 << 30);
    assert_eq!(js.sync, SyncPolicy::Always);
    let js = load("jetstream { max_memory_store: -1, max_file: \"1MB\", sync_interval: \"2m\" }")
        .jetstream;
    assert_eq!((js.max_memory, js.max_file), (-1, 1 << 20));
    assert_eq!(js.sync, SyncPolicy::Interval(Duration::from_secs(120)));
    let js = load("jetstream { max_mem_store: 64MiB, sync: never }").jetstream;
    assert_eq!((js.max_memory, js.sync), (64 << 20, SyncPolicy::Never));
    assert_eq!(
        load("jetstream { sync: 5 }").jetstream.sync,
        SyncPolicy::Interval(Duration::from_secs(5))
    );
    assert_eq!(bad_key("jetstream { sync: \"0s\" }"), "jetstream.sync");
    assert_eq!(bad_key("jetstream { sync: sometimes }"), "jetstream.sync");
    assert_eq!(bad_key("jetstream { max_mem: -2 }"), "jetstream.max_mem");
    assert_eq!(
        bad_key("jetstream { store_dir: {} }"),
        "jetstream.store_dir"
    );
}

#[test]
fn sync_policy_strings() {
    assert_eq!(parse_sync_policy("ALWAYS"), Some(SyncPolicy::Always));
    assert_eq!(parse_sync_policy("never"), Some(SyncPolicy::Never));
    assert_eq!(
        parse_sync_policy("100ms"),
        Some(SyncPolicy::Interval(Duration::from_millis(100)))
    );
    assert_eq!(parse_sync_policy("0"), None);
    assert_eq!(parse_sync_policy("often"), None);
}

#[test]
fn host_port_strings() {
    assert_eq!(split_host_port("a:1"), Some((Some("a".into()), 1)));
    assert_eq!(split_host_port(":2"), Some((None, 2)));
    assert_eq!(split_host_port("3"), Some((None, 3)));
    assert_eq!(split_host_port("[::]:4"), Some((Some("::".into()), 4)));
    assert_eq!(split_host_port("h:-1"), Some((Some("h".into()), 0)));
    assert_eq!(split_host_port("::1"), None);
    assert_eq!(split_host_port("h:65536"), None);
}

#[test]
fn files_and_includes() {
    let dir = std::env::temp_dir().join(format!("causeway-load-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("users.conf"),
        "users: [ {user: u, password: p} ]\n",
    )
    .unwrap();
    let main = dir.join("server.conf");
    std::fs::write(
        &main,
        "port: 4999\nauthorization {\n  include users.conf\n}\n",
    )
    .unwrap();
    let cfg = from_file(&main).unwrap();
    assert_eq!(cfg.port, 4999);
    assert_eq!(cfg.auth.users[0].user, "u");
    let err = from_file(&dir.join("missing.conf")).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }), "{err:?}");
    std::fs::write(&main, "port: 4999\nbroken: [\n").unwrap();
    let err = from_file(&main).unwrap_err().to_string();
    assert!(err.contains("Parse error"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn nkey_users() {
    let key = nkeys::KeyPair::new_user().public_key();
    let cfg = load(&format!(
        "authorization {{ users: [ {{ nkey: {key}, permissions: {{ publish: \"a.>\" }} }} ] }}\nno_auth_user: {key}"
    ));
    let user = &cfg.auth.users[0];
    assert_eq!(user.nkey.as_deref(), Some(key.as_str()));
    assert!(user.user.is_empty() && user.permissions.is_some());
    let account = nkeys::KeyPair::new_account().public_key();
    for text in [
        "authorization { users: [ {nkey: UABC} ] }".to_string(),
        format!("authorization {{ users: [ {{nkey: {account}}} ] }}"),
        format!("authorization {{ users: [ {{nkey: {key}, password: p}} ] }}"),
    ] {
        let e = error(&text);
        assert!(matches!(&e, ConfigError::Invalid { .. }), "{text}: {e:?}");
    }
}

#[test]
fn tls_and_websocket_blocks() {
    let cfg = load(
        r#"
        tls {
          cert_file: "s.pem", key_file: "s.key", ca_file: "ca.pem"
          verify_and_map: true, timeout: 0.5, handshake_first: "300ms", min_version: "1.3"
          pinned_certs: ["A2F0000000000000000000000000000000000000000000000000000000000001"]
        }
        allow_non_tls: true
        websocket { listen: "127.0.0.1:8443", tls { cert_file: w.pem, key_file: w.key }
                    same_origin: true, allowed_origins: ["https://app.example"],
                    handshake_timeout: "5s" }
        "#,
    );
    let tls = cfg.tls.expect("tls");
    assert_eq!(tls.cert_file, PathBuf::from("s.pem"));
    assert_eq!(tls.ca_file, Some(PathBuf::from("ca.pem")));
    assert!(tls.map_users && tls.verifies_clients() && !tls.verify);
    assert_eq!(tls.timeout, Duration::from_millis(500));
    assert_eq!(
        tls.handshake_first,
        super::super::HandshakeFirst::Fallback(Duration::from_millis(300))
    );
    assert!(tls.tls13_only);
    assert_eq!(
        tls.pinned_certs,
        ["a2f0000000000000000000000000000000000000000000000000000000000001"]
    );
    assert!(cfg.allow_non_tls);
    let ws = cfg.websocket.expect("websocket");
    assert_eq!((ws.host.as_str(), ws.port), ("127.0.0.1", 8443));
    assert!(ws.tls.is_some() && ws.same_origin && !ws.no_tls);
    assert_eq!(ws.allowed_origins, ["https://app.example"]);
    assert_eq!(ws.handshake_timeout, Duration::from_secs(5));

    let first = |v: &str| {
        load(&format!(
            "tls {{ cert_file: a, key_file: b, handshake_first: {v} }}"
        ))
        .tls
        .expect("tls")
        .handshake_first
    };
    assert_eq!(first("true"), super::super::HandshakeFirst::On);
    assert_eq!(first("false"), super::super::HandshakeFirst::Off);
    assert_eq!(
        first("auto"),
        super::super::HandshakeFirst::Fallback(super::super::HANDSHAKE_FIRST_AUTO)
    );

    for (text, key) in [
        ("tls { key_file: k }", "tls.cert_file"),
        (
            "tls { cert_file: c, key_file: k, pinned_certs: [nothex] }",
            "tls.pinned_certs",
        ),
        (
            "tls { cert_file: c, key_file: k, min_version: \"1.1\" }",
            "tls.min_version",
        ),
        ("websocket { no_tls: true }", "websocket.port"),
        ("websocket { port: 1 }", "websocket"),
    ] {
        let e = error(text);
        assert!(
            matches!(&e, ConfigError::Invalid { key: k, .. } if k == key),
            "{text}: {e:?}"
        );
    }
    let cfg = load("websocket { port: 1, no_tls: true, compression: true }");
    assert!(cfg.websocket.is_some_and(|ws| ws.compression));
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
}

#[test]
fn cluster_block() {
    let cfg = load(
        "server_name: n1\n\
         cluster {\n\
           name: east\n\
           listen: 127.0.0.1:6333\n\
           routes: [nats-route://10.0.0.2:6222, \"nats://u:p@10.0.0.3:6222\"]\n\
           advertise: \"east1.example:6222\"\n\
           no_advertise: true\n\
           connect_retries: 5\n\
           authorization { user: ruser, password: rpass, timeout: 0.5 }\n\
         }",
    );
    assert_eq!(cfg.server_name.as_deref(), Some("n1"));
    let c = cfg.cluster.expect("cluster");
    assert_eq!(c.name.as_deref(), Some("east"));
    assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 6333));
    assert_eq!(
        c.routes,
        ["nats-route://10.0.0.2:6222", "nats://u:p@10.0.0.3:6222"]
    );
    assert_eq!(c.advertise.as_deref(), Some("east1.example:6222"));
    assert!(c.no_advertise);
    assert_eq!(c.connect_retries, 5);
    let auth = c.auth.expect("route authorization");
    assert_eq!(
        (auth.user.as_str(), auth.password.as_str()),
        ("ruser", "rpass")
    );
    assert_eq!(auth.timeout, Some(Duration::from_millis(500)));

    // host + port, -1 for a random port; defaults otherwise.
    let c = load("cluster { host: 0.0.0.0, port: -1 }").cluster.unwrap();
    assert_eq!((c.host.as_str(), c.port, c.name), ("0.0.0.0", 0, None));
    let c = load("cluster {}").cluster.unwrap();
    assert_eq!(c, ClusterConfig::default());
    assert_eq!(c.port, DEFAULT_CLUSTER_PORT);
    assert!(load("port: 1").cluster.is_none());

    assert_eq!(
        bad_key("cluster { routes: [\"nats-route://h\"] }"),
        "cluster.routes[0]"
    );
    assert_eq!(
        bad_key("cluster { routes: \"nats-route://h:1\" }"),
        "cluster.routes"
    );
    assert_eq!(
        bad_key("cluster { advertise: \"1234\" }"),
        "cluster.advertise"
    );
    assert_eq!(bad_key("cluster { port: 99999 }"), "cluster.port");
    assert_eq!(
        bad_key("cluster { no_advertise: maybe }"),
        "cluster.no_advertise"
    );
    assert_eq!(
        bad_key("cluster { authorization { password: p } }"),
        "cluster.authorization.user"
    );
    assert!(matches!(
        error("cluster { bogus: 1 }"),
        ConfigError::Unknown { key } if key == "cluster.bogus"
    ));
}

#[test]
fn jetstream_in_a_cluster_needs_names_and_routes() {
    for (text, says) in [
        ("cluster { port: -1 }\njetstream: enabled", "`server_name`"),
        (
            "server_name: a\njetstream { store_dir: /tmp/x }\ncluster { port: -1 }",
            "`cluster.name`",
        ),
        (
            "server_name: a\njetstream: enabled\ncluster { name: c, port: -1 }",
            "configured routes",
        ),
    ] {
        let e = error(text);
        assert!(
            matches!(e, ConfigError::ClusterJetStream(_)),
            "{text}: {e:?}"
        );
        assert!(e.to_string().contains(says), "{text}: {e}");
    }
    let ok = load(
        "server_name: a\njetstream: enabled\ncluster { name: c, listen: 127.0.0.1:6222, routes: [nats-route://127.0.0.1:6222, nats-route://127.0.0.1:6223, nats://localhost:6224, nats://127.0.0.1:6223] }",
    );
    assert_eq!(ok.cluster.as_ref().map(|c| c.expected_size()), Some(3));
    // Either alone is fine.
    assert!(load("jetstream: enabled").jetstream.enabled);
    assert!(load("cluster { port: -1 }").cluster.is_some());
}

#[test]
fn route_urls() {
    let u = parse_route_url("nats-route://user:secret@10.1.2.3:6222/").unwrap();
    assert_eq!(u.addr, "10.1.2.3:6222");
    assert_eq!(
        (u.user.as_deref(), u.password.as_deref()),
        (Some("user"), Some("secret"))
    );
    assert_eq!(parse_route_url("nats://h:1").unwrap().addr, "h:1");
    assert_eq!(parse_route_url("[::1]:7").unwrap().addr, "[::1]:7");
    for bad in [
        "nats-route://h",
        "nats-route://:6222",
        "nats://h:0",
        "nats://h:x",
        "",
    ] {
        assert!(parse_route_url(bad).is_none(), "{bad}");
    }
}

#[test]
fn a_leaf_listener_never_admits_anyone_where_clients_must_log_in() {
    let text = "authorization { user: a, password: b }\nleafnodes { port: 7422 }";
    let e = error(text);
    assert!(
        matches!(&e, ConfigError::Invalid { key, .. } if key == "leafnodes.authorization"),
        "{e:?}"
    );
    let ok = "authorization { user: a, password: b }\nleafnodes { port: 7422, authorization { user: l, password: p } }";
    assert!(from_conf_text(ok, None).is_ok());
}

#[test]
fn leaf_users_are_bound_to_their_accounts() {
    let text = "accounts { A: { users: [ {user: a, password: b} ] } }\nleafnodes { port: 7422, authorization { users: [ {user: l1, password: p1, account: A}, {user: l2, password: p2} ] } }";
    let cfg = from_conf_text(text, None).expect("config");
    let auth = cfg.leafnodes.and_then(|l| l.auth).expect("leaf auth");
    let logins: Vec<_> = auth.logins().collect();
    assert_eq!(logins, [("l1", "p1", "A"), ("l2", "p2", "$G")]);
    let bad = "leafnodes { port: 7422, authorization { users: [ {user: l1, password: p1, account: B} ] } }";
    let e = error(bad);
    assert!(
        matches!(&e, ConfigError::Invalid { key, .. } if key == "leafnodes.authorization.account"),
        "{e:?}"
    );
}
