//! The policy in etcd: where each thing lives, and the one transaction that replaces the
//! policy.
//!
//! Keys, under a prefix (default `/backbone`):
//!
//! - `PREFIX/policy/document`: the policy as the operator wrote it (TOML). One key, so
//!   one put replaces the whole policy and a watcher sees one event per change, whatever
//!   its size (etcd's default request limit, 1.5 MiB, holds some 5,000 clients).
//! - `PREFIX/policy/previous`: JSON `{"revision": R, "document": TEXT}`, the document
//!   that the last apply replaced and the revision it was written at: what `rollback`
//!   restores. Written in the same transaction as the document.
//! - `PREFIX/edges/EDGE/status`: each agent's report, under its lease (gone when the
//!   agent is).
//! - `PREFIX/edges/EDGE/applied`: what each agent applied to its appliance (its part and
//!   the revision), without a lease: an agent that restarts knows what it owns.
//!
//! An apply is one transaction, guarded by the document's revision as read before it: if
//! another apply came in between, nothing is written and the command says so.

use crate::error::PolicyError;
use crate::model::Policy;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp, WatchOptions,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use thiserror::Error;

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "/backbone";

/// How long one etcd request may take before it counts as etcd being unreachable.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// etcd could not be reached or refused the request.
    #[error("etcd {endpoints}: {source}")]
    Etcd {
        endpoints: String,
        #[source]
        source: etcd_client::Error,
    },
    /// The policy changed between our read and our write.
    #[error("the policy changed while this command ran (now revision {now}); nothing was written: run it again")]
    Conflict { now: i64 },
    /// The stored document does not validate (written by something else than `apply`).
    #[error("the stored policy (revision {revision}) does not validate: {source}")]
    Stored {
        revision: i64,
        #[source]
        source: PolicyError,
    },
    /// Not every edge reported the revision in time.
    #[error("after {waited:.1} s, not every edge runs revision {revision}: {}", lagging.join("; "))]
    Lagging {
        revision: i64,
        waited: f64,
        /// Each edge that does not, and what its report says.
        lagging: Vec<String>,
    },
    /// There is nothing to roll back to.
    #[error("no previous policy is recorded: nothing to roll back to")]
    NoPrevious,
    /// A value that is not what we write there.
    #[error("{key}: {problem}")]
    Malformed { key: String, problem: String },
}

/// The stored policy document and the revision that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub text: String,
    pub revision: i64,
}

/// `PREFIX/policy/previous`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Previous {
    /// The revision at which this document had been written.
    pub revision: i64,
    pub document: String,
}

/// What an apply or a rollback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The revision that holds the new document.
    pub revision: i64,
    /// The revision of the document it replaced, where there was one.
    pub replaced: Option<i64>,
}

/// A connection to etcd and the key prefix.
#[derive(Clone)]
pub struct Store {
    client: Client,
    prefix: String,
    endpoints: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({} {})", self.endpoints, self.prefix)
    }
}

impl Store {
    /// Connect to etcd at `endpoints` (comma-separated URLs).
    pub async fn connect(endpoints: &str, prefix: &str) -> Result<Store, StoreError> {
        let list: Vec<&str> = endpoints
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        let client = Client::connect(list, Some(options))
            .await
            .map_err(|source| StoreError::Etcd {
                endpoints: endpoints.to_owned(),
                source,
            })?;
        Ok(Store {
            client,
            prefix: prefix.trim_end_matches('/').to_owned(),
            endpoints: endpoints.to_owned(),
        })
    }

    /// The etcd client (for watches and leases).
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Wrap an etcd error with the endpoints.
    pub fn etcd(&self, source: etcd_client::Error) -> StoreError {
        StoreError::Etcd {
            endpoints: self.endpoints.clone(),
            source,
        }
    }

    pub fn document_key(&self) -> String {
        format!("{}/policy/document", self.prefix)
    }

    pub fn previous_key(&self) -> String {
        format!("{}/policy/previous", self.prefix)
    }

    pub fn edges_key(&self) -> String {
        format!("{}/edges/", self.prefix)
    }

    pub fn status_key(&self, edge: &str) -> String {
        format!("{}/edges/{edge}/status", self.prefix)
    }

    pub fn applied_key(&self, edge: &str) -> String {
        format!("{}/edges/{edge}/applied", self.prefix)
    }

    /// The stored document (if any) and etcd's current revision.
    pub async fn document(&mut self) -> Result<(Option<Stored>, i64), StoreError> {
        let key = self.document_key();
        let r = self.client.get(key, None).await.map_err(|e| self.etcd(e))?;
        let now = r.header().map_or(0, |h| h.revision());
        let stored = match r.kvs().first() {
            None => None,
            Some(kv) => Some(Stored {
                text: kv.value_str().map_err(|e| self.etcd(e))?.to_owned(),
                revision: kv.mod_revision(),
            }),
        };
        Ok((stored, now))
    }

    /// The stored document, validated.
    pub async fn policy(&mut self) -> Result<Option<(Policy, Stored)>, StoreError> {
        match self.document().await?.0 {
            None => Ok(None),
            Some(s) => {
                let p = Policy::parse(&s.text, &format!("revision {}", s.revision)).map_err(
                    |source| StoreError::Stored {
                        revision: s.revision,
                        source,
                    },
                )?;
                Ok(Some((p, s)))
            }
        }
    }

    /// etcd's current revision.
    pub async fn revision(&mut self) -> Result<i64, StoreError> {
        Ok(self.document().await?.1)
    }

    /// The document that the last apply replaced.
    pub async fn previous(&mut self) -> Result<Option<Previous>, StoreError> {
        let key = self.previous_key();
        let r = self
            .client
            .get(key.clone(), None)
            .await
            .map_err(|e| self.etcd(e))?;
        match r.kvs().first() {
            None => Ok(None),
            Some(kv) => {
                serde_json::from_slice(kv.value())
                    .map(Some)
                    .map_err(|e| StoreError::Malformed {
                        key,
                        problem: e.to_string(),
                    })
            }
        }
    }

    /// Write `text` (already validated by the caller) as the policy, in one transaction
    /// that also records the document it replaces, if the document is still the one
    /// read as `current`.
    pub async fn write(
        &mut self,
        text: &str,
        current: Option<&Stored>,
    ) -> Result<Written, StoreError> {
        let doc = self.document_key();
        let guard = match current {
            Some(s) => Compare::mod_revision(doc.clone(), CompareOp::Equal, s.revision),
            None => Compare::version(doc.clone(), CompareOp::Equal, 0),
        };
        let mut ops = vec![TxnOp::put(doc, text, None)];
        match current {
            Some(s) => {
                let previous = Previous {
                    revision: s.revision,
                    document: s.text.clone(),
                };
                let json = serde_json::to_string(&previous).unwrap_or_default();
                ops.push(TxnOp::put(self.previous_key(), json, None));
            }
            None => ops.push(TxnOp::delete(self.previous_key(), None)),
        }
        let r = self
            .client
            .txn(Txn::new().when([guard]).and_then(ops))
            .await
            .map_err(|e| self.etcd(e))?;
        let revision = r.header().map_or(0, |h| h.revision());
        if !r.succeeded() {
            return Err(StoreError::Conflict { now: revision });
        }
        Ok(Written {
            revision,
            replaced: current.map(|s| s.revision),
        })
    }

    /// Wait until every edge in `edges` reports `revision` (or a later one) applied
    /// without error and run by every worker of its appliance (a dry-run agent has no
    /// workers); returns how long each took, in the order they got there. Follows the
    /// reports with a watch; gives up after `limit`, naming the edges that lag and why.
    pub async fn wait_applied(
        &mut self,
        edges: &[String],
        revision: i64,
        limit: Duration,
    ) -> Result<Vec<(String, Duration)>, StoreError> {
        let start = Instant::now();
        let mut done: BTreeMap<String, Duration> = BTreeMap::new();
        let mut last: BTreeMap<String, Value> = BTreeMap::new();
        let prefix = self.edges_key();
        let r = self
            .client
            .get(
                prefix.clone(),
                Some(GetOptions::new().with_prefix().with_keys_only()),
            )
            .await
            .map_err(|e| self.etcd(e))?;
        let from = r.header().map_or(0, |h| h.revision()) + 1;
        let mut watch = self
            .client
            .watch(
                prefix,
                Some(WatchOptions::new().with_prefix().with_start_revision(from)),
            )
            .await
            .map_err(|e| self.etcd(e))?;
        loop {
            for (edge, report) in self.statuses().await? {
                if !done.contains_key(&edge) && edges.contains(&edge) && runs(&report, revision) {
                    done.insert(edge.clone(), start.elapsed());
                }
                last.insert(edge, report);
            }
            if done.len() == edges.len() {
                let mut order: Vec<(String, Duration)> = done.into_iter().collect();
                order.sort_by_key(|(_, t)| *t);
                return Ok(order);
            }
            let left = limit.saturating_sub(start.elapsed());
            match tokio::time::timeout(left, watch.message()).await {
                Ok(m) => {
                    m.map_err(|e| self.etcd(e))?;
                }
                Err(_) => {
                    let lagging = edges
                        .iter()
                        .filter(|e| !done.contains_key(*e))
                        .map(|e| match last.get(e) {
                            None => format!("{e}: no report (is its agent running?)"),
                            Some(r) => format!(
                                "{e}: revision {}{}{}{}",
                                r["revision"],
                                if r["workers_run_it"] == false {
                                    ", not yet run by every worker"
                                } else {
                                    ""
                                },
                                held(r),
                                r["error"]
                                    .as_str()
                                    .map(|x| format!(", error: {x}"))
                                    .unwrap_or_default()
                            ),
                        })
                        .collect();
                    return Err(StoreError::Lagging {
                        revision,
                        waited: start.elapsed().as_secs_f64(),
                        lagging,
                    });
                }
            }
        }
    }

    /// Every agent's status report, by edge name.
    pub async fn statuses(&mut self) -> Result<Vec<(String, Value)>, StoreError> {
        let prefix = self.edges_key();
        let r = self
            .client
            .get(prefix.clone(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| self.etcd(e))?;
        let mut out = Vec::new();
        for kv in r.kvs() {
            let key = String::from_utf8_lossy(kv.key());
            let Some(edge) = key
                .strip_prefix(&prefix)
                .and_then(|k| k.strip_suffix("/status"))
            else {
                continue;
            };
            let v: Value = serde_json::from_slice(kv.value()).unwrap_or(Value::Null);
            out.push((edge.to_owned(), v));
        }
        Ok(out)
    }
}

/// A report's new tunnels held back (make before announce), as words for an operator;
/// empty when none.
pub fn held(report: &Value) -> String {
    let names: Vec<&str> = report["held"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if names.is_empty() {
        String::new()
    } else {
        format!(
            ", holding {} until every other edge reports revision {} made",
            names.join(", "),
            report["made_revision"]
        )
    }
}

/// Whether a report says its edge runs `revision` (or later): applied without error, and
/// every worker on it (where there is an appliance).
fn runs(report: &Value, revision: i64) -> bool {
    report["revision"].as_i64().is_some_and(|r| r >= revision)
        && report["error"].is_null()
        && report["workers_run_it"] != Value::Bool(false)
}
