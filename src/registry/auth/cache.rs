//! The process-wide cache of bearer tokens, keyed by what a token server would answer the same
//! way: (realm, service, the set of scopes, who asked). Every session of a process (a push of
//! several tags, the base images of a build) reuses a token until it expires.
//!
//! Not responsible for: fetching tokens (see `token`) or deciding when a cached token is
//! stale beyond its lifetime (a 401 makes `auth` drop it with [`forget`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A token and until when it is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub value: String,
    pub fresh_until: Instant,
}

impl Token {
    /// A token obtained at `now`, valid for `lifetime`. It is used until a tenth of its
    /// lifetime (at most 10 s) is left, so a request is not sent with a token that expires on
    /// the way.
    pub fn new(value: String, lifetime: Duration, now: Instant) -> Self {
        let margin = (lifetime / 10).min(Duration::from_secs(10));
        Self {
            value,
            fresh_until: now + lifetime.saturating_sub(margin),
        }
    }

    /// Whether the token can still be sent at `now`.
    pub fn is_fresh(&self, now: Instant) -> bool {
        now < self.fresh_until
    }
}

/// What identifies a token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub realm: String,
    pub service: String,
    pub scopes: BTreeSet<String>,
    /// Empty for anonymous tokens; else the user and a digest of the secret, so a changed
    /// password does not reuse a token.
    pub identity: String,
}

static TOKENS: LazyLock<Mutex<HashMap<Key, Token>>> = LazyLock::new(Default::default);

fn tokens() -> std::sync::MutexGuard<'static, HashMap<Key, Token>> {
    // A cache: a panic elsewhere cannot leave it inconsistent.
    TOKENS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A fresh cached token for `key`, if any.
pub fn get(key: &Key, now: Instant) -> Option<Token> {
    let mut tokens = tokens();
    match tokens.get(key) {
        Some(t) if t.is_fresh(now) => Some(t.clone()),
        Some(_) => {
            tokens.remove(key);
            None
        }
        None => None,
    }
}

/// Remember `token` for `key`.
pub fn put(key: Key, token: Token) {
    tokens().insert(key, token);
}

/// Drop the token for `key` (the registry refused it).
pub fn forget(key: &Key) {
    tokens().remove(key);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(realm: &str, scopes: &[&str]) -> Key {
        Key {
            realm: realm.to_owned(),
            service: "svc".to_owned(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            identity: String::new(),
        }
    }

    #[test]
    fn tokens_expire_before_their_lifetime_ends() {
        let now = Instant::now();
        let t = Token::new("t".into(), Duration::from_secs(60), now);
        assert!(t.is_fresh(now + Duration::from_secs(53)));
        assert!(!t.is_fresh(now + Duration::from_secs(54)));
        let long = Token::new("t".into(), Duration::from_secs(3600), now);
        assert!(long.is_fresh(now + Duration::from_secs(3589)));
        assert!(!long.is_fresh(now + Duration::from_secs(3590)));
    }

    #[test]
    fn cache_is_keyed_by_scope_set_and_drops_stale_tokens() {
        let realm = "http://cache-test.invalid/token";
        let now = Instant::now();
        put(
            key(realm, &["repository:a:pull", "repository:b:pull"]),
            Token::new("ab".into(), Duration::from_secs(60), now),
        );
        // The same set in another order is the same key.
        assert_eq!(
            get(
                &key(realm, &["repository:b:pull", "repository:a:pull"]),
                now
            )
            .map(|t| t.value),
            Some("ab".to_owned())
        );
        assert_eq!(get(&key(realm, &["repository:a:pull"]), now), None);
        let k = key(realm, &["repository:a:pull", "repository:b:pull"]);
        assert_eq!(get(&k, now + Duration::from_secs(120)), None);
        assert_eq!(get(&k, now), None, "a stale token is dropped");
        put(
            k.clone(),
            Token::new("x".into(), Duration::from_secs(60), now),
        );
        forget(&k);
        assert_eq!(get(&k, now), None);
    }
}
