//! The connection to the Redis primary, fixed or found through Sentinel.
//!
//! `redis://…` names one server: a [`ConnectionManager`] to it, re-made
//! after failures, is all there is. `redis+sentinel://h1:26379,h2:26379/NAME`
//! names a group of Sentinels and the master they watch: the primary is
//! asked of the Sentinels, and asked again when the one in use stops
//! answering (connection refused or dropped) or answers `READONLY` (it came
//! back as a replica after a failover). redis-rs's `ConnectionManager` only
//! ever reconnects to the address it was built with, so this type holds one
//! per resolved primary and swaps it.
//!
//! A command that failed because the server refused it without running it
//! (`READONLY`, connection refused) is sent once more to the new primary;
//! a command whose connection dropped mid-flight is not (it may have run),
//! its caller sees [`StoreError::Unavailable`](crate::store::StoreError) and
//! retries at its own level, where InferQ's writes are idempotent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, ServerErrorKind, Value,
};

/// The URL scheme of a Sentinel-managed primary.
pub const SENTINEL_SCHEME: &str = "redis+sentinel://";
/// Shortest time between two questions to the Sentinels.
const RESOLVE_INTERVAL: Duration = Duration::from_millis(200);

/// Where the primary is, parsed from the store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelTarget {
    /// `host:port` of each Sentinel.
    pub sentinels: Vec<String>,
    /// The master name the Sentinels monitor (`sentinel monitor NAME …`).
    pub master: String,
    /// Database number on the primary.
    pub db: i64,
    /// `user:password` (or `:password`) for the primary, not the Sentinels.
    pub auth: Option<(Option<String>, String)>,
}

/// Parses `redis+sentinel://[[user]:password@]host:port[,host:port…]/NAME[/DB]`.
pub fn parse_sentinel_url(url: &str) -> Result<SentinelTarget, String> {
    let rest = url
        .strip_prefix(SENTINEL_SCHEME)
        .ok_or_else(|| format!("not a {SENTINEL_SCHEME} URL"))?;
    let (authority, path) = rest
        .split_once('/')
        .ok_or("redis+sentinel URL needs /MASTER_NAME after the Sentinel addresses")?;
    let (auth, hosts) = match authority.rsplit_once('@') {
        Some((auth, hosts)) => {
            let (user, password) = auth.split_once(':').unwrap_or(("", auth));
            let user = (!user.is_empty()).then(|| user.to_owned());
            (Some((user, password.to_owned())), hosts)
        }
        None => (None, authority),
    };
    let sentinels: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| {
            if h.contains(':') {
                h.to_owned()
            } else {
                format!("{h}:26379")
            }
        })
        .collect();
    if sentinels.is_empty() {
        return Err("redis+sentinel URL names no Sentinel".into());
    }
    let mut parts = path.trim_end_matches('/').splitn(2, '/');
    let master = parts.next().unwrap_or_default().to_owned();
    if master.is_empty() {
        return Err("redis+sentinel URL names no master (…/NAME)".into());
    }
    let db = match parts.next() {
        Some(db) => db
            .parse()
            .map_err(|_| format!("redis+sentinel URL: database {db:?} is not a number"))?,
        None => 0,
    };
    Ok(SentinelTarget {
        sentinels,
        master,
        db,
        auth,
    })
}

fn manager_config(timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1))
}

/// What the current connection came from.
struct Current {
    /// Bumped on every re-resolve, so concurrent failures resolve once.
    generation: u64,
    client: redis::Client,
    manager: ConnectionManager,
}

struct Resolver {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    master: String,
    last: std::sync::Mutex<Option<Instant>>,
}

struct Inner {
    resolver: Option<Resolver>,
    current: std::sync::RwLock<Option<Arc<Current>>>,
    timeout: Duration,
}

/// A cheap-to-clone handle on the Redis primary; use it like a connection.
#[derive(Clone)]
pub struct Primary {
    inner: Arc<Inner>,
}

impl Primary {
    /// Opens nothing yet: the first command connects (so a process can
    /// start while Redis is down and report not-ready).
    pub fn new(url: &str, timeout: Duration) -> RedisResult<Self> {
        let (resolver, current) = if url.starts_with(SENTINEL_SCHEME) {
            let target = parse_sentinel_url(url)
                .map_err(|e| RedisError::from((ErrorKind::InvalidClientConfig, "bad URL", e)))?;
            let mut info = redis::RedisConnectionInfo::default().set_db(target.db);
            if let Some((user, password)) = &target.auth {
                if let Some(user) = user {
                    info = info.set_username(user);
                }
                info = info.set_password(password);
            }
            let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(info);
            let urls: Vec<String> = target
                .sentinels
                .iter()
                .map(|h| format!("redis://{h}/"))
                .collect();
            let sentinel = SentinelClient::build(
                urls,
                target.master.clone(),
                Some(node),
                SentinelServerType::Master,
            )?;
            let resolver = Resolver {
                sentinel: tokio::sync::Mutex::new(sentinel),
                master: target.master,
                last: std::sync::Mutex::new(None),
            };
            (Some(resolver), None)
        } else {
            let client = redis::Client::open(url)?;
            let manager =
                ConnectionManager::new_lazy_with_config(client.clone(), manager_config(timeout))?;
            let current = Arc::new(Current {
                generation: 0,
                client,
                manager,
            });
            (None, Some(current))
        };
        Ok(Primary {
            inner: Arc::new(Inner {
                resolver,
                current: std::sync::RwLock::new(current),
                timeout,
            }),
        })
    }

    fn current(&self) -> Option<Arc<Current>> {
        self.inner
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The connection in use, asking the Sentinels first if there is none.
    async fn connection(&self) -> RedisResult<Arc<Current>> {
        match self.current() {
            Some(c) => Ok(c),
            None => self.resolve(None).await,
        }
    }

    /// A client for the current primary (for pub/sub, which needs a
    /// connection of its own); `stale` is the generation that just failed.
    pub async fn client(&self, stale: Option<u64>) -> RedisResult<(u64, redis::Client)> {
        let current = match (self.current(), stale) {
            (Some(c), Some(g)) if c.generation == g && self.inner.resolver.is_some() => {
                self.resolve(Some(g)).await?
            }
            (Some(c), _) => c,
            (None, _) => self.resolve(None).await?,
        };
        Ok((current.generation, current.client.clone()))
    }

    /// Asks the Sentinels for the primary, unless another task already did
    /// since generation `failed` went bad.
    async fn resolve(&self, failed: Option<u64>) -> RedisResult<Arc<Current>> {
        let Some(resolver) = &self.inner.resolver else {
            return self.current().ok_or_else(|| {
                RedisError::from((ErrorKind::InvalidClientConfig, "no Redis connection"))
            });
        };
        let mut sentinel = resolver.sentinel.lock().await;
        if let Some(c) = self.current() {
            let moved_on = failed.is_none_or(|g| c.generation != g);
            let recent = resolver
                .last
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some_and(|t| t.elapsed() < RESOLVE_INTERVAL);
            if moved_on || recent {
                return Ok(c);
            }
        }
        *resolver.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        let client = tokio::time::timeout(self.inner.timeout, sentinel.async_get_client())
            .await
            .map_err(|_| {
                RedisError::from((ErrorKind::Io, "timed out asking the Redis Sentinels"))
            })??;
        let manager = ConnectionManager::new_lazy_with_config(
            client.clone(),
            manager_config(self.inner.timeout),
        )?;
        let generation = self.current().map_or(1, |c| c.generation + 1);
        let addr = client.get_connection_info().addr().to_string();
        tracing::info!(master = %resolver.master, primary = %addr, generation, "redis primary resolved through Sentinel");
        let current = Arc::new(Current {
            generation,
            client,
            manager,
        });
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(current.clone());
        Ok(current)
    }

    /// After `err` on `current`: re-resolves if the error says the primary
    /// may have moved, and returns the connection to send the command to
    /// once more, or `err` when it must not be sent again.
    async fn retry_target(&self, current: &Current, err: RedisError) -> RedisResult<Arc<Current>> {
        if self.inner.resolver.is_none() || !primary_moved(&err) {
            return Err(err);
        }
        tracing::warn!(error = %err, "redis primary failed; asking the Sentinels");
        let next = self.resolve(Some(current.generation)).await?;
        if next.generation == current.generation || !surely_not_run(&err) {
            return Err(err);
        }
        Ok(next)
    }
}

/// An error after which the primary may be another server now.
fn primary_moved(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
        || e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
}

/// An error that proves the command did not run.
fn surely_not_run(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly) || e.is_connection_refusal()
}

impl ConnectionLike for Primary {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        async move {
            let current = self.connection().await?;
            let err = match current.manager.clone().req_packed_command(cmd).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let next = self.retry_target(&current, err).await?;
            next.manager.clone().req_packed_command(cmd).await
        }
        .boxed()
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        async move {
            let current = self.connection().await?;
            let mut manager = current.manager.clone();
            let err = match manager.req_packed_commands(pipeline, offset, count).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let next = self.retry_target(&current, err).await?;
            let mut manager = next.manager.clone();
            manager.req_packed_commands(pipeline, offset, count).await
        }
        .boxed()
    }

    fn get_db(&self) -> i64 {
        self.current().map_or(0, |c| c.manager.get_db())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_parse() {
        let t =
            parse_sentinel_url("redis+sentinel://10.0.0.1:26379,10.0.0.2,h3:5000/inferq").unwrap();
        assert_eq!(t.sentinels, ["10.0.0.1:26379", "10.0.0.2:26379", "h3:5000"]);
        assert_eq!(t.master, "inferq");
        assert_eq!(t.db, 0);
        assert_eq!(t.auth, None);
        let t = parse_sentinel_url("redis+sentinel://:s3cret@h1:26379/m/2").unwrap();
        assert_eq!(t.auth, Some((None, "s3cret".into())));
        assert_eq!(t.db, 2);
        let t = parse_sentinel_url("redis+sentinel://app:pw@h1/m").unwrap();
        assert_eq!(t.auth, Some((Some("app".into()), "pw".into())));
        assert!(parse_sentinel_url("redis+sentinel://h1:26379").is_err());
        assert!(parse_sentinel_url("redis+sentinel://h1:26379/").is_err());
        assert!(parse_sentinel_url("redis+sentinel:///m").is_err());
        assert!(parse_sentinel_url("redis+sentinel://h1/m/x").is_err());
        assert!(parse_sentinel_url("redis://h1/m").is_err());
    }

    #[test]
    fn only_refusals_are_resent() {
        let readonly = RedisError::from((ErrorKind::Server(ServerErrorKind::ReadOnly), "READONLY"));
        assert!(primary_moved(&readonly) && surely_not_run(&readonly));
        let refused: RedisError =
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into();
        assert!(primary_moved(&refused) && surely_not_run(&refused));
        let dropped: RedisError = std::io::Error::from(std::io::ErrorKind::BrokenPipe).into();
        assert!(primary_moved(&dropped) && !surely_not_run(&dropped));
        let other = RedisError::from((ErrorKind::Parse, "bad"));
        assert!(!primary_moved(&other));
    }
}
