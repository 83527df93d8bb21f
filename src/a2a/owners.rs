//! Who started each task: only that caller may read, continue, cancel or follow it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use a2a_protocol::{A2AError, StreamResponse};
use a2a_server::{AgentExecutor, ExecutorContext, RequestAuthorizer, ServiceParams};
use futures_util::stream::BoxStream;

use super::caller;
use crate::spiffe_id::SpiffeId;

/// The number of task owners [`TaskOwners::default`] remembers.
pub const DEFAULT_TASK_OWNERS: usize = 10_000;

#[derive(Debug)]
struct Owners {
    by_task: HashMap<String, SpiffeId>,
    order: VecDeque<String>,
    capacity: usize,
}

/// The SPIFFE ID that started each task, so that a task's content (a refused caller's, or a
/// `secret` skill's answer) is only for the caller who asked.
///
/// - [`executor`](Self::executor) wraps the agent's [`AgentExecutor`]: when a task starts,
///   the caller (the `x-spiffe-id` service parameter, see [`caller`]) becomes its owner.
/// - As the SDK's [`RequestAuthorizer`] (`DefaultRequestHandler::with_authorizer`), it lets
///   a call that names a task (`GetTask`, `CancelTask`, `SubscribeToTask`, a message that
///   continues a task) through only for its owner; anyone else, or a task it does not know,
///   gets "task not found", as if the task did not exist, and an audit event.
///
/// It remembers the last `capacity` owners; an older task is then not found for anyone.
///
/// # Example
/// ```
/// use spiffe_mtls::a2a::TaskOwners;
/// use spiffe_mtls::a2a::a2a_server::{AgentExecutor, DefaultRequestHandler, InMemoryTaskStore};
///
/// fn handler(executor: impl AgentExecutor) -> DefaultRequestHandler {
///     let owners = TaskOwners::default();
///     DefaultRequestHandler::new(owners.executor(executor), InMemoryTaskStore::new())
///         .with_authorizer(owners)
/// }
/// ```
#[derive(Debug, Clone)]
pub struct TaskOwners {
    inner: Arc<Mutex<Owners>>,
}

impl Default for TaskOwners {
    fn default() -> Self {
        Self::new(DEFAULT_TASK_OWNERS)
    }
}

impl TaskOwners {
    /// Remembers the owners of the last `capacity` tasks (at least one).
    ///
    /// # Example
    /// ```
    /// let owners = spiffe_mtls::a2a::TaskOwners::new(100);
    /// assert_eq!(owners.owner("no such task"), None);
    /// ```
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Owners {
                by_task: HashMap::new(),
                order: VecDeque::new(),
                capacity: capacity.max(1),
            })),
        }
    }

    /// The owner of `task_id`, if known.
    ///
    /// # Example
    /// See [`TaskOwners::new`].
    pub fn owner(&self, task_id: &str) -> Option<SpiffeId> {
        let owners = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        owners.by_task.get(task_id).cloned()
    }

    /// Makes `owner` the owner of `task_id`, unless it has one.
    fn record(&self, task_id: &str, owner: SpiffeId) {
        let mut owners = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if owners.by_task.contains_key(task_id) {
            return;
        }
        while owners.order.len() >= owners.capacity {
            if let Some(old) = owners.order.pop_front() {
                owners.by_task.remove(&old);
            }
        }
        owners.order.push_back(task_id.to_owned());
        owners.by_task.insert(task_id.to_owned(), owner);
    }

    /// `inner`, recording each new task's caller as its owner.
    ///
    /// # Example
    /// See [`TaskOwners`].
    pub fn executor<E: AgentExecutor>(&self, inner: E) -> OwnedExecutor<E> {
        OwnedExecutor {
            inner,
            owners: self.clone(),
        }
    }
}

impl RequestAuthorizer for TaskOwners {
    fn authorize(&self, params: &ServiceParams, task_id: Option<&str>) -> Result<(), A2AError> {
        let Some(task_id) = task_id else {
            return Ok(());
        };
        let id = caller(params);
        match (self.owner(task_id), &id) {
            (Some(owner), Some(id)) if &owner == id => Ok(()),
            (owner, _) => {
                let rule = match owner {
                    Some(owner) => format!("task {task_id} belongs to {owner}"),
                    None => format!("task {task_id} has no known owner"),
                };
                match &id {
                    Some(id) => super::audit::refused(id, "task", "-", &rule),
                    None => super::audit::unauthenticated("task"),
                }
                Err(A2AError::task_not_found(task_id))
            }
        }
    }
}

/// An [`AgentExecutor`] that records each new task's caller with a [`TaskOwners`] (from
/// [`TaskOwners::executor`]).
///
/// # Example
/// See [`TaskOwners`].
#[derive(Debug)]
pub struct OwnedExecutor<E> {
    inner: E,
    owners: TaskOwners,
}

impl<E: AgentExecutor> AgentExecutor for OwnedExecutor<E> {
    fn execute(
        &self,
        ctx: ExecutorContext,
    ) -> BoxStream<'static, Result<StreamResponse, A2AError>> {
        if let Some(id) = caller(&ctx.service_params) {
            self.owners.record(&ctx.task_id, id);
        }
        self.inner.execute(ctx)
    }

    fn cancel(&self, ctx: ExecutorContext) -> BoxStream<'static, Result<StreamResponse, A2AError>> {
        self.inner.cancel(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(id: &str) -> ServiceParams {
        ServiceParams::from([(crate::net::SPIFFE_ID_HEADER.to_owned(), vec![id.to_owned()])])
    }

    #[test]
    fn only_the_owner_reaches_a_task() {
        let owners = TaskOwners::new(2);
        owners.record("t1", "spiffe://example.org/a".parse().unwrap());
        assert!(
            owners
                .authorize(&params("spiffe://example.org/a"), Some("t1"))
                .is_ok()
        );
        assert!(
            owners
                .authorize(&params("spiffe://example.org/b"), Some("t1"))
                .is_err()
        );
        assert!(owners.authorize(&ServiceParams::new(), Some("t1")).is_err());
        assert!(
            owners
                .authorize(&params("spiffe://example.org/a"), Some("t9"))
                .is_err()
        );
        assert!(
            owners
                .authorize(&params("spiffe://example.org/b"), None)
                .is_ok()
        );
        // The first owner stays; the oldest is forgotten beyond the capacity.
        owners.record("t1", "spiffe://example.org/b".parse().unwrap());
        assert_eq!(
            owners.owner("t1").unwrap().to_string(),
            "spiffe://example.org/a"
        );
        owners.record("t2", "spiffe://example.org/a".parse().unwrap());
        owners.record("t3", "spiffe://example.org/a".parse().unwrap());
        assert_eq!(owners.owner("t1"), None);
        assert!(owners.owner("t3").is_some());
    }
}
