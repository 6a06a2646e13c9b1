//! Client authentication (user/password, token, users list; plain or bcrypt secrets) and the
//! per-user publish/subscribe permissions checked on every PUB and SUB.

use std::sync::Arc;

use crate::config::{AuthConfig, Permissions, SubjectPermission};
use crate::protocol::info::ConnectOptions;
use crate::protocol::subject;

/// Compiled permissions of one user.
#[derive(Debug, Default)]
pub(crate) struct Perms {
    publish: Option<SubjectPermission>,
    subscribe: Option<SubjectPermission>,
    /// Deny patterns applied at delivery to subscriptions that only partly overlap them.
    pub sub_deny: Option<Arc<[String]>>,
}

impl Perms {
    fn new(p: &Permissions) -> Self {
        let sub_deny = p
            .subscribe
            .as_ref()
            .filter(|s| !s.deny.is_empty())
            .map(|s| Arc::from(s.deny.clone()));
        Self {
            publish: p.publish.clone(),
            subscribe: p.subscribe.clone(),
            sub_deny,
        }
    }

    /// May this user publish to the literal `subj`?
    pub fn can_publish(&self, subj: &str) -> bool {
        match &self.publish {
            None => true,
            Some(p) => {
                (p.allow.is_empty() || p.allow.iter().any(|a| subject::matches(a, subj)))
                    && !p.deny.iter().any(|d| subject::matches(d, subj))
            }
        }
    }

    /// May this user subscribe to `subj` (which may hold wildcards)?
    pub fn can_subscribe(&self, subj: &str) -> bool {
        match &self.subscribe {
            None => true,
            Some(p) => {
                (p.allow.is_empty() || p.allow.iter().any(|a| subject::covers(a, subj)))
                    && !p.deny.iter().any(|d| subject::covers(d, subj))
            }
        }
    }
}

/// Checks CONNECT credentials against the configuration.
pub(crate) struct Authenticator {
    cfg: AuthConfig,
    perms: Vec<Option<Arc<Perms>>>,
}

/// Outcome of a successful authentication.
pub(crate) struct Authenticated {
    /// Permissions, if the user has any restrictions.
    pub perms: Option<Arc<Perms>>,
    /// User name, for logs and monitoring.
    pub user: Option<String>,
}

impl Authenticator {
    pub fn new(cfg: &AuthConfig) -> Self {
        let perms = cfg
            .users
            .iter()
            .map(|u| u.permissions.as_ref().map(|p| Arc::new(Perms::new(p))))
            .collect();
        Self {
            cfg: cfg.clone(),
            perms,
        }
    }

    /// True when clients must authenticate.
    pub fn required(&self) -> bool {
        self.cfg.required()
    }

    /// True when any configured secret is a bcrypt hash (checking it is slow: run it off the
    /// async workers).
    pub fn is_slow(&self) -> bool {
        let hashed = |s: &Option<String>| s.as_deref().is_some_and(is_bcrypt);
        hashed(&self.cfg.password)
            || hashed(&self.cfg.token)
            || self.cfg.users.iter().any(|u| is_bcrypt(&u.password))
    }

    /// Verifies credentials; `None` means "Authorization Violation".
    pub fn check(&self, opts: &ConnectOptions) -> Option<Authenticated> {
        if !self.required() {
            return Some(Authenticated {
                perms: None,
                user: opts.user.clone(),
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
                });
        }
        let user = opts.user.as_deref()?;
        let pass = opts.pass.as_deref().unwrap_or("");
        if let Some(u) = &self.cfg.user {
            if u == user && secret_matches(self.cfg.password.as_deref().unwrap_or(""), pass) {
                return Some(Authenticated {
                    perms: None,
                    user: Some(user.to_string()),
                });
            }
        }
        let i = self.cfg.users.iter().position(|u| u.user == user)?;
        if !secret_matches(&self.cfg.users[i].password, pass) {
            return None;
        }
        Some(Authenticated {
            perms: self.perms[i].clone(),
            user: Some(user.to_string()),
        })
    }
}

fn is_bcrypt(s: &str) -> bool {
    s.starts_with("$2a$") || s.starts_with("$2b$") || s.starts_with("$2y$")
}

fn secret_matches(stored: &str, given: &str) -> bool {
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
    use crate::config::User;

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
                    }),
                },
                User {
                    user: "b".into(),
                    password: hash,
                    permissions: None,
                },
            ],
            ..Default::default()
        };
        let auth = Authenticator::new(&cfg);
        assert!(auth.required() && auth.is_slow());
        assert!(auth.check(&opts("a", "nope")).is_none());
        assert!(auth.check(&opts("zz", "pw")).is_none());
        assert!(auth.check(&opts("b", "s3cret")).is_some());
        let p = auth
            .check(&opts("a", "pw"))
            .and_then(|a| a.perms)
            .expect("perms");
        assert!(p.can_publish("foo.bar"));
        assert!(!p.can_publish("foo.secret"));
        assert!(!p.can_publish("bar"));
        assert!(p.can_subscribe(">"));
        assert!(!p.can_subscribe("private.x"));
    }

    #[test]
    fn token() {
        let auth = Authenticator::new(&AuthConfig {
            token: Some("t0k".into()),
            ..Default::default()
        });
        let mut o = ConnectOptions::default();
        assert!(auth.check(&o).is_none());
        o.auth_token = Some("t0k".into());
        assert!(auth.check(&o).is_some());
    }
}
