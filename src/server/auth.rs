//! Client authentication (user/password, token, users list; plain or bcrypt secrets;
//! `no_auth_user`) and the per-user permissions checked on every PUB and SUB: publish and
//! subscribe allow/deny lists (subscribe entries may name a queue group: `"work.> workers"`),
//! `default_permissions`, and `allow_responses` (see [`Responses`]).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustc_hash::FxHashMap;

use crate::config::{AuthConfig, Permissions, ResponsePermission, User};
use crate::protocol::info::ConnectOptions;
use crate::protocol::subject;

/// One subscribe permission entry: a subject pattern, optionally limited to one queue group
/// (itself a pattern, as nats-server allows).
#[derive(Debug, Clone, PartialEq, Eq)]
struct SubRule {
    subject: String,
    queue: Option<String>,
}

impl SubRule {
    fn parse(entry: &str) -> Self {
        let mut parts = entry.split_whitespace();
        let subject = parts.next().unwrap_or_default().to_string();
        let queue = parts.next().map(str::to_string);
        Self { subject, queue }
    }

    /// Does this allow entry permit subscribing to `subj` (in `queue`)? An entry without a
    /// queue permits any queue; one with a queue permits only that queue.
    fn allows(&self, subj: &str, queue: Option<&str>) -> bool {
        subject::covers(&self.subject, subj)
            && match (&self.queue, queue) {
                (None, _) => true,
                (Some(q), Some(given)) => subject::matches(q, given),
                (Some(_), None) => false,
            }
    }

    /// Does this deny entry apply to a subscription in `queue`? One without a queue applies
    /// to every subscription, one with a queue only to that queue's.
    fn applies_to(&self, queue: Option<&str>) -> bool {
        match (&self.queue, queue) {
            (None, _) => true,
            (Some(q), Some(given)) => subject::matches(q, given),
            (Some(_), None) => false,
        }
    }
}

/// Compiled permissions of one user.
#[derive(Debug, Default)]
pub(crate) struct Perms {
    /// `None`: any subject; `Some(list)`: only these (an empty list: none).
    pub_allow: Option<Vec<String>>,
    pub_deny: Vec<String>,
    sub_allow: Option<Vec<SubRule>>,
    sub_deny: Vec<SubRule>,
    /// `allow_responses`, if set.
    pub responses: Option<ResponsePermission>,
}

impl Perms {
    pub(super) fn new(p: &Permissions) -> Self {
        let publish = p.publish.clone().unwrap_or_default();
        // With allow_responses, publishing is limited to the allow list: nothing else, if the
        // user has none (nats-server empties it).
        let pub_allow = if !publish.allow.is_empty() || p.allow_responses.is_some() {
            Some(publish.allow)
        } else {
            None
        };
        let subscribe = p.subscribe.clone().unwrap_or_default();
        let rules = |list: &[String]| list.iter().map(|e| SubRule::parse(e)).collect::<Vec<_>>();
        Self {
            pub_allow,
            pub_deny: publish.deny,
            sub_allow: (!subscribe.allow.is_empty()).then(|| rules(&subscribe.allow)),
            sub_deny: rules(&subscribe.deny),
            responses: p.allow_responses,
        }
    }

    /// The permissions as nats-server shows a user its own (`$SYS.REQ.USER.INFO`).
    pub fn public_json(&self) -> serde_json::Value {
        use serde_json::json;
        let list = |allow: Option<Vec<String>>, deny: Vec<String>| {
            let mut v = json!({});
            if let Some(a) = allow.filter(|a| !a.is_empty()) {
                v["allow"] = json!(a);
            }
            if !deny.is_empty() {
                v["deny"] = json!(deny);
            }
            v
        };
        let rule = |r: &SubRule| match &r.queue {
            Some(q) => format!("{} {q}", r.subject),
            None => r.subject.clone(),
        };
        let mut v = json!({
            "publish": list(self.pub_allow.clone(), self.pub_deny.clone()),
            "subscribe": list(
                self.sub_allow.as_ref().map(|a| a.iter().map(rule).collect()),
                self.sub_deny.iter().map(rule).collect(),
            ),
        });
        if let Some(r) = &self.responses {
            let ttl = u64::try_from(r.expires.as_nanos()).unwrap_or(u64::MAX);
            v["responses"] = json!({ "max": r.max, "ttl": ttl });
        }
        v
    }

    /// May this user publish to the literal `subj` (replies under allow_responses aside)?
    pub fn can_publish(&self, subj: &str) -> bool {
        self.pub_allow
            .as_ref()
            .is_none_or(|allow| allow.iter().any(|a| subject::matches(a, subj)))
            && !self.pub_deny.iter().any(|d| subject::matches(d, subj))
    }

    /// May this user subscribe to `subj` (which may hold wildcards), in `queue` if given?
    pub fn can_subscribe(&self, subj: &str, queue: Option<&str>) -> bool {
        self.sub_allow
            .as_ref()
            .is_none_or(|allow| allow.iter().any(|r| r.allows(subj, queue)))
            && !self
                .sub_deny
                .iter()
                .any(|r| r.applies_to(queue) && subject::covers(&r.subject, subj))
    }

    /// The deny patterns to apply at delivery to a subscription in `queue` that only partly
    /// overlaps them (a `>` subscription of a user denied `secret.>`).
    pub fn delivery_deny(&self, queue: Option<&str>) -> Option<Arc<[String]>> {
        let list: Vec<String> = self
            .sub_deny
            .iter()
            .filter(|r| r.applies_to(queue))
            .map(|r| r.subject.clone())
            .collect();
        (!list.is_empty()).then(|| Arc::from(list))
    }
}

/// The reply subjects a user with `allow_responses` may publish to: each message delivered to
/// it with a reply subject opens one entry, good for `max` replies within `expires`.
#[derive(Debug)]
pub(crate) struct Responses {
    perm: ResponsePermission,
    open: Mutex<OpenReplies>,
}

/// Reply subject -> (replies left, deadline).
type OpenReplies = FxHashMap<Box<[u8]>, (usize, Instant)>;

/// Entries kept before expired ones are swept.
const RESPONSES_SWEEP: usize = 1024;

impl Responses {
    pub fn new(perm: ResponsePermission) -> Arc<Self> {
        Arc::new(Self {
            perm,
            open: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OpenReplies> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A message with reply subject `reply` was delivered to the user.
    pub fn delivered(&self, reply: &[u8]) {
        let now = Instant::now();
        let mut open = self.lock();
        if open.len() >= RESPONSES_SWEEP {
            open.retain(|_, (_, deadline)| *deadline > now);
        }
        open.insert(reply.into(), (self.perm.max, now + self.perm.expires));
    }

    /// Uses up one reply to `subj`, if one is open.
    pub fn take(&self, subj: &[u8]) -> bool {
        let mut open = self.lock();
        let Some((left, deadline)) = open.get_mut(subj) else {
            return false;
        };
        if *deadline <= Instant::now() {
            open.remove(subj);
            return false;
        }
        *left -= 1;
        if *left == 0 {
            open.remove(subj);
        }
        true
    }
}

/// Checks CONNECT credentials against the configuration.
pub(crate) struct Authenticator {
    cfg: AuthConfig,
    /// Operator mode: users log in with JWTs of these accounts.
    trust: Option<crate::config::Trust>,
    perms: Vec<Option<Arc<Perms>>>,
}

/// What a connection proves besides its CONNECT: the names its client certificate offers
/// (with `verify_and_map`) and its kind, for `allowed_connection_types`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Identity<'a> {
    /// `Some` when the listener maps certificates to users.
    pub certificate: Option<&'a [String]>,
    /// `STANDARD` or `WEBSOCKET`.
    pub conn_type: &'a str,
    /// The nonce this connection's INFO carried, for nkey users to sign.
    pub nonce: Option<&'a str>,
}

impl Identity<'_> {
    /// A plain connection with no certificate identities.
    #[cfg(test)]
    pub fn plain() -> Identity<'static> {
        Identity {
            certificate: None,
            conn_type: "STANDARD",
            nonce: None,
        }
    }
}

/// Outcome of a successful authentication.
pub(crate) struct Authenticated {
    /// Permissions, if the user has any restrictions.
    pub perms: Option<Arc<Perms>>,
    /// User name, for logs and monitoring.
    pub user: Option<String>,
    /// The user's account of `accounts {}`; `None`: the global account.
    pub account: Option<String>,
    /// When the credentials expire (a user JWT's `exp`, Unix seconds).
    pub expires: Option<i64>,
}

impl Authenticator {
    pub fn new(cfg: &AuthConfig, trust: Option<&crate::config::Trust>) -> Self {
        let perms = cfg
            .users
            .iter()
            .map(|u| {
                u.permissions
                    .as_ref()
                    .or(cfg.default_permissions.as_ref())
                    .map(|p| Arc::new(Perms::new(p)))
            })
            .collect();
        Self {
            cfg: cfg.clone(),
            trust: trust.cloned(),
            perms,
        }
    }

    /// `authorization { timeout }`, if set.
    pub fn timeout(&self) -> Option<std::time::Duration> {
        self.cfg.timeout
    }

    /// True when any authentication is configured.
    pub fn required(&self) -> bool {
        self.trust.is_some() || self.cfg.required()
    }

    /// True when clients must send credentials (INFO `auth_required`).
    pub fn credentials_required(&self) -> bool {
        self.trust.is_some() || self.cfg.credentials_required()
    }

    /// True when any configured secret is a bcrypt hash (checking it is slow: run it off the
    /// async workers).
    pub fn is_slow(&self) -> bool {
        let hashed = |s: &Option<String>| s.as_deref().is_some_and(is_bcrypt);
        hashed(&self.cfg.password)
            || hashed(&self.cfg.token)
            || self.cfg.users.iter().any(|u| is_bcrypt(&u.password))
    }

    /// Verifies credentials; `None` means "Authorization Violation". With a certificate
    /// identity (`verify_and_map`), the first name that is a configured user logs the client
    /// in as that user, whatever its CONNECT says.
    pub fn check(&self, opts: &ConnectOptions, id: &Identity<'_>) -> Option<Authenticated> {
        if let Some(trust) = &self.trust {
            return super::auth_jwt::check(trust, opts, id);
        }
        if let (Some(names), true) = (id.certificate, !self.cfg.users.is_empty()) {
            let i = names
                .iter()
                .find_map(|n| self.cfg.users.iter().position(|u| &u.user == n))?;
            return self.user_at(i, id.conn_type);
        }
        if !self.required() {
            return Some(Authenticated {
                perms: None,
                user: opts.user.clone(),
                account: None,
                expires: None,
            });
        }
        if let Some(token) = &self.cfg.token {
            return opts
                .auth_token
                .as_deref()
                .filter(|given| secret_matches(token, given))
                .map(|_| Authenticated {
                    perms: None,
                    user: None,
                    account: None,
                    expires: None,
                });
        }
        if let Some(key) = opts.nkey.as_deref().filter(|k| !k.is_empty()) {
            let i = self
                .cfg
                .users
                .iter()
                .position(|u| u.nkey.as_deref() == Some(key))?;
            let signed = nkey_signed(key, id.nonce?, opts.sig.as_deref()?);
            return signed.then(|| self.user_at(i, id.conn_type)).flatten();
        }
        if let Some(name) = self.anonymous_as(opts) {
            let i = self
                .cfg
                .users
                .iter()
                .position(|u| u.user == name || u.nkey.as_deref() == Some(name))?;
            return self.user_at(i, id.conn_type);
        }
        let user = opts.user.as_deref()?;
        let pass = opts.pass.as_deref().unwrap_or("");
        if let Some(u) = &self.cfg.user {
            if u == user && secret_matches(self.cfg.password.as_deref().unwrap_or(""), pass) {
                return Some(Authenticated {
                    perms: None,
                    user: Some(user.to_string()),
                    account: None,
                    expires: None,
                });
            }
        }
        // nkey users have no name or password: they only sign in with their key.
        let i = self
            .cfg
            .users
            .iter()
            .position(|u| u.nkey.is_none() && u.user == user)?;
        if !secret_matches(&self.cfg.users[i].password, pass) {
            return None;
        }
        self.user_at(i, id.conn_type)
    }

    /// [`Self::check`] for a plain connection.
    #[cfg(test)]
    fn check_plain(&self, opts: &ConnectOptions) -> Option<Authenticated> {
        self.check(opts, &Identity::plain())
    }

    /// The `no_auth_user` a client that sent no credentials at all is logged in as.
    fn anonymous_as(&self, opts: &ConnectOptions) -> Option<&str> {
        let blank = |s: &Option<String>| s.as_deref().is_none_or(str::is_empty);
        let anonymous = blank(&opts.user)
            && blank(&opts.pass)
            && blank(&opts.auth_token)
            && blank(&opts.nkey)
            && blank(&opts.jwt);
        self.cfg.no_auth_user.as_deref().filter(|_| anonymous)
    }

    fn user_at(&self, i: usize, conn_type: &str) -> Option<Authenticated> {
        let user: &User = &self.cfg.users[i];
        let type_ok = user
            .allowed_connection_types
            .as_ref()
            .is_none_or(|types| types.iter().any(|t| t == conn_type));
        type_ok.then(|| Authenticated {
            perms: self.perms[i].clone(),
            user: Some(user.nkey.clone().unwrap_or_else(|| user.user.clone())),
            account: user.account.clone(),
            expires: None,
        })
    }
}

/// Did the holder of `key`'s seed sign `nonce`? `sig` is base64 (URL alphabet unpadded, as
/// clients send it, or the standard one).
pub(super) fn nkey_signed(key: &str, nonce: &str, sig: &str) -> bool {
    use base64::Engine;
    let engines = [
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
        base64::engine::general_purpose::STANDARD,
    ];
    let Some(sig) = engines.iter().find_map(|e| e.decode(sig).ok()) else {
        return false;
    };
    nkeys::KeyPair::from_public_key(key).is_ok_and(|kp| kp.verify(nonce.as_bytes(), &sig).is_ok())
}

impl Authenticator {
    /// A fresh nonce for a connection's INFO, when nkey users exist (they sign it).
    pub fn new_nonce(&self) -> Option<String> {
        use base64::Engine;
        use rand::RngCore;
        if self.trust.is_none() && !self.cfg.users.iter().any(|u| u.nkey.is_some()) {
            return None;
        }
        let mut raw = [0u8; 11];
        rand::rng().fill_bytes(&mut raw);
        Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw))
    }
}

fn is_bcrypt(s: &str) -> bool {
    s.starts_with("$2a$") || s.starts_with("$2b$") || s.starts_with("$2y$")
}

/// Whether `given` is the configured secret `stored` (plain text, compared in constant
/// time, or a bcrypt hash): users' passwords and tokens, route and leaf node credentials.
pub(crate) fn secret_matches(stored: &str, given: &str) -> bool {
    if is_bcrypt(stored) {
        bcrypt::verify(given, stored).unwrap_or(false)
    } else {
        constant_time_eq(stored.as_bytes(), given.as_bytes())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SubjectPermission;

    fn opts(user: &str, pass: &str) -> ConnectOptions {
        ConnectOptions {
            user: Some(user.into()),
            pass: Some(pass.into()),
            ..Default::default()
        }
    }

    #[test]
    fn users_and_permissions() {
        let hash = bcrypt::hash("s3cret", 4).expect("hash");
        let cfg = AuthConfig {
            users: vec![
                User {
                    user: "a".into(),
                    password: "pw".into(),
                    permissions: Some(Permissions {
                        publish: Some(SubjectPermission {
                            allow: vec!["foo.>".into()],
                            deny: vec!["foo.secret".into()],
                        }),
                        subscribe: Some(SubjectPermission {
                            allow: vec![],
                            deny: vec!["private.>".into()],
                        }),
                        allow_responses: None,
                    }),
                    allowed_connection_types: None,
                    ..User::default()
                },
                User {
                    user: "b".into(),
                    password: hash,
                    permissions: None,
                    allowed_connection_types: None,
                    ..User::default()
                },
            ],
            ..Default::default()
        };
        let auth = Authenticator::new(&cfg, None);
        assert!(auth.required() && auth.is_slow());
        assert!(auth.check_plain(&opts("a", "nope")).is_none());
        assert!(auth.check_plain(&opts("zz", "pw")).is_none());
        assert!(auth.check_plain(&opts("b", "s3cret")).is_some());
        let p = auth
            .check_plain(&opts("a", "pw"))
            .and_then(|a| a.perms)
            .expect("perms");
        assert!(p.can_publish("foo.bar"));
        assert!(!p.can_publish("foo.secret"));
        assert!(!p.can_publish("bar"));
        assert!(p.can_subscribe(">", None));
        assert!(!p.can_subscribe("private.x", None));
        assert!(!p.can_subscribe("private.x", Some("q")));
    }

    #[test]
    fn token() {
        let cfg = AuthConfig {
            token: Some("t0k".into()),
            ..Default::default()
        };
        let auth = Authenticator::new(&cfg, None);
        let mut o = ConnectOptions::default();
        assert!(auth.check_plain(&o).is_none());
        o.auth_token = Some("t0k".into());
        assert!(auth.check_plain(&o).is_some());
    }

    fn perms(publish: &[&str], subscribe: &[&str], deny: &[&str]) -> Perms {
        let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Perms::new(&Permissions {
            publish: (!publish.is_empty()).then(|| SubjectPermission {
                allow: list(publish),
                deny: vec![],
            }),
            subscribe: Some(SubjectPermission {
                allow: list(subscribe),
                deny: list(deny),
            }),
            allow_responses: None,
        })
    }

    #[test]
    fn queue_qualified_subscribe_rules() {
        let p = perms(&[], &["work.> workers", "plain.>"], &[]);
        assert!(p.can_subscribe("work.a", Some("workers")));
        assert!(p.can_subscribe("work.*", Some("workers")));
        assert!(!p.can_subscribe("work.a", Some("other")));
        assert!(!p.can_subscribe("work.a", None));
        assert!(!p.can_subscribe(">", Some("workers")));
        assert!(p.can_subscribe("plain.a", None));
        assert!(p.can_subscribe("plain.a", Some("anyq")));
        let d = perms(&[], &[">"], &["work.> bad"]);
        assert!(!d.can_subscribe("work.a", Some("bad")));
        assert!(d.can_subscribe("work.a", Some("good")));
        assert!(d.can_subscribe("work.a", None));
        assert!(d.can_subscribe(">", Some("bad")));
        assert_eq!(
            d.delivery_deny(Some("bad")).as_deref(),
            Some(&["work.>".to_string()][..])
        );
        assert_eq!(d.delivery_deny(None), None);
    }

    #[test]
    fn allow_responses_limits_publish() {
        let mut p = Permissions {
            allow_responses: Some(ResponsePermission {
                max: 2,
                expires: std::time::Duration::from_millis(200),
            }),
            ..Default::default()
        };
        assert!(!Perms::new(&p).can_publish("anything"));
        p.publish = Some(SubjectPermission {
            allow: vec![],
            deny: vec!["bar".into()],
        });
        assert!(!Perms::new(&p).can_publish("other"));
        p.publish = Some(SubjectPermission {
            allow: vec!["foo".into()],
            deny: vec![],
        });
        let compiled = Perms::new(&p);
        assert!(compiled.can_publish("foo") && !compiled.can_publish("foo.bar"));
        let r = Responses::new(compiled.responses.expect("responses"));
        assert!(!r.take(b"_INBOX.1"));
        r.delivered(b"_INBOX.1");
        assert!(r.take(b"_INBOX.1") && r.take(b"_INBOX.1"));
        assert!(!r.take(b"_INBOX.1"), "max 2 replies");
        r.delivered(b"_INBOX.2");
        std::thread::sleep(std::time::Duration::from_millis(250));
        assert!(!r.take(b"_INBOX.2"), "expired");
    }

    #[test]
    fn default_permissions_and_no_auth_user() {
        let cfg = AuthConfig {
            users: vec![
                User {
                    user: "a".into(),
                    password: "p".into(),
                    ..Default::default()
                },
                User {
                    user: "b".into(),
                    password: "p".into(),
                    permissions: Some(Permissions::default()),
                    ..Default::default()
                },
                User {
                    user: "ws".into(),
                    password: "p".into(),
                    allowed_connection_types: Some(vec!["WEBSOCKET".into()]),
                    ..Default::default()
                },
            ],
            default_permissions: Some(Permissions {
                publish: Some(SubjectPermission {
                    allow: vec!["pub.>".into()],
                    deny: vec![],
                }),
                ..Default::default()
            }),
            no_auth_user: Some("a".into()),
            ..Default::default()
        };
        let auth = Authenticator::new(&cfg, None);
        assert!(auth.required() && !auth.credentials_required());
        let a = auth
            .check_plain(&opts("a", "p"))
            .and_then(|a| a.perms)
            .expect("a");
        assert!(a.can_publish("pub.x") && !a.can_publish("other"));
        let b = auth
            .check_plain(&opts("b", "p"))
            .and_then(|a| a.perms)
            .expect("b");
        assert!(
            b.can_publish("other"),
            "own permissions replace the defaults"
        );
        let anon = auth
            .check_plain(&ConnectOptions::default())
            .expect("no_auth_user");
        assert_eq!(anon.user.as_deref(), Some("a"));
        assert!(
            auth.check_plain(&opts("a", "bad")).is_none(),
            "no fallback on bad credentials"
        );
        assert!(
            auth.check_plain(&opts("ws", "p")).is_none(),
            "websocket-only user"
        );
    }
}
