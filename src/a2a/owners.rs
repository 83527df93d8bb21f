//! Who started each task: only that caller may read, continue, cancel, follow or list it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use a2a_protocol::{
    A2AError, AgentCard, CancelTaskRequest, DeleteTaskPushNotificationConfigRequest,
    GetExtendedAgentCardRequest, GetTaskPushNotificationConfigRequest, GetTaskRequest,
    ListTaskPushNotificationConfigsRequest, ListTaskPushNotificationConfigsResponse,
    ListTasksRequest, ListTasksResponse, SendMessageRequest, SendMessageResponse, StreamResponse,
    SubscribeToTaskRequest, Task, TaskPushNotificationConfig, error_code, jsonrpc::methods,
};
use a2a_server::pagination::resolve_page_size;
use a2a_server::{
    AgentExecutor, ExecutorContext, RequestAuthorizer, RequestHandler, ServiceParams,
};
use async_trait::async_trait;
use futures_util::stream::BoxStream;

use super::caller;
use crate::spiffe_id::SpiffeId;

/// The number of task owners [`TaskOwners::default`] remembers.
pub const DEFAULT_TASK_OWNERS: usize = 10_000;

#[derive(Debug)]
struct Owners {
    by_task: HashMap<String, SpiffeId>,
    by_owner: HashMap<SpiffeId, BTreeSet<String>>,
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
/// - [`handler`](Self::handler) wraps the handler (the SDK's `DefaultRequestHandler` lists
///   every caller's tasks): `ListTasks` answers with the caller's own tasks only, its paging
///   and `totalSize` counting nothing else.
///
/// It remembers the last `capacity` owners; an older task is then not found for anyone.
///
/// # Example
/// ```
/// use spiffe_mtls::a2a::{OwnedHandler, TaskOwners};
/// use spiffe_mtls::a2a::a2a_server::{AgentExecutor, DefaultRequestHandler, InMemoryTaskStore};
///
/// fn handler(executor: impl AgentExecutor) -> OwnedHandler<DefaultRequestHandler> {
///     let owners = TaskOwners::default();
///     owners.handler(
///         DefaultRequestHandler::new(owners.executor(executor), InMemoryTaskStore::new())
///             .with_authorizer(owners.clone()),
///     )
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
                by_owner: HashMap::new(),
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

    /// The tasks `owner` started that are remembered, ordered by task ID.
    ///
    /// # Example
    /// ```
    /// let owners = spiffe_mtls::a2a::TaskOwners::new(100);
    /// let caller = "spiffe://example.org/agent/client".parse()?;
    /// assert!(owners.tasks_of(&caller).is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tasks_of(&self, owner: &SpiffeId) -> Vec<String> {
        let owners = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        owners
            .by_owner
            .get(owner)
            .map(|tasks| tasks.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Makes `owner` the owner of `task_id`, unless it has one.
    fn record(&self, task_id: &str, owner: SpiffeId) {
        let mut owners = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if owners.by_task.contains_key(task_id) {
            return;
        }
        while owners.order.len() >= owners.capacity {
            let Some(old) = owners.order.pop_front() else {
                break;
            };
            if let Some(old_owner) = owners.by_task.remove(&old)
                && let Some(tasks) = owners.by_owner.get_mut(&old_owner)
            {
                tasks.remove(&old);
                if tasks.is_empty() {
                    owners.by_owner.remove(&old_owner);
                }
            }
        }
        owners.order.push_back(task_id.to_owned());
        owners
            .by_owner
            .entry(owner.clone())
            .or_default()
            .insert(task_id.to_owned());
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

    /// `inner`, answering `ListTasks` with the caller's own tasks only.
    ///
    /// Place it inside the [`InterceptingHandler`](super::InterceptingHandler), so that the
    /// [`SkillPolicy`](super::SkillPolicy) decides the `ListTasks` route first.
    ///
    /// # Example
    /// See [`TaskOwners`].
    pub fn handler<H: RequestHandler>(&self, inner: H) -> OwnedHandler<H> {
        OwnedHandler {
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
                    Some(id) => super::audit::refused(
                        id,
                        "task",
                        "-",
                        "-",
                        &rule,
                        super::audit::CallEvidence {
                            task_id: Some(task_id),
                            policy_sha256: None,
                        },
                    ),
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

/// A [`RequestHandler`] (from [`TaskOwners::handler`]) that answers `ListTasks` with the
/// caller's own tasks, and passes every other call to the handler it wraps.
///
/// The caller is the verified `x-spiffe-id` service parameter ([`caller`]); a call without
/// one is refused. The tasks are those the [`TaskOwners`] remembers for that caller, each
/// read through the wrapped handler's `GetTask` (so its authorizer and `historyLength` apply;
/// a task the store no longer has is left out), filtered by the request's `contextId`,
/// `status` and `statusTimestampAfter`, ordered by task ID and paged: `pageSize` as the SDK
/// bounds it, `pageToken` the offset `nextPageToken` gave, `totalSize` the number of the
/// caller's tasks that match. Nothing in the answer depends on another caller's tasks.
///
/// One listing reads each of the caller's remembered tasks (at most the capacity of the
/// [`TaskOwners`]).
///
/// # Example
/// See [`TaskOwners`].
pub struct OwnedHandler<H> {
    inner: H,
    owners: TaskOwners,
}

impl<H> std::fmt::Debug for OwnedHandler<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedHandler")
            .field("owners", &self.owners)
            .finish_non_exhaustive()
    }
}

impl<H: RequestHandler> OwnedHandler<H> {
    /// The handler the other calls go to.
    ///
    /// # Example
    /// ```
    /// # use spiffe_mtls::a2a::{TaskOwners, a2a_server::{AgentExecutor, DefaultRequestHandler, InMemoryTaskStore}};
    /// # fn f(executor: impl AgentExecutor) {
    /// let owners = TaskOwners::default();
    /// let handler = owners.handler(DefaultRequestHandler::new(executor, InMemoryTaskStore::new()));
    /// let _inner: &DefaultRequestHandler = handler.inner();
    /// # }
    /// ```
    pub fn inner(&self) -> &H {
        &self.inner
    }
}

/// Whether `task` passes the filters of a `ListTasks` request.
fn matches(task: &Task, req: &ListTasksRequest) -> bool {
    req.context_id
        .as_ref()
        .is_none_or(|context| &task.context_id == context)
        && req
            .status
            .as_ref()
            .is_none_or(|status| &task.status.state == status)
        && req.status_timestamp_after.is_none_or(|after| {
            task.status
                .timestamp
                .is_some_and(|timestamp| timestamp > after)
        })
}

/// The offset a `ListTasks` page token names (none or empty: the first page).
fn page_start(token: Option<&str>) -> Result<usize, A2AError> {
    match token {
        None | Some("") => Ok(0),
        Some(token) => token.parse().map_err(|_| {
            A2AError::invalid_params(format!(
                "invalid page token {token:?}: not a nextPageToken of this agent"
            ))
        }),
    }
}

#[async_trait]
impl<H: RequestHandler> RequestHandler for OwnedHandler<H> {
    async fn send_message(
        &self,
        params: &ServiceParams,
        req: SendMessageRequest,
    ) -> Result<SendMessageResponse, A2AError> {
        self.inner.send_message(params, req).await
    }

    async fn send_streaming_message(
        &self,
        params: &ServiceParams,
        req: SendMessageRequest,
    ) -> Result<BoxStream<'static, Result<StreamResponse, A2AError>>, A2AError> {
        self.inner.send_streaming_message(params, req).await
    }

    async fn get_task(
        &self,
        params: &ServiceParams,
        req: GetTaskRequest,
    ) -> Result<Task, A2AError> {
        self.inner.get_task(params, req).await
    }

    async fn list_tasks(
        &self,
        params: &ServiceParams,
        req: ListTasksRequest,
    ) -> Result<ListTasksResponse, A2AError> {
        let Some(id) = caller(params) else {
            super::audit::unauthenticated(methods::LIST_TASKS);
            return Err(A2AError::new(
                super::REFUSED_CODE,
                format!("{} needs a verified SPIFFE ID", methods::LIST_TASKS),
            ));
        };
        let page_size = resolve_page_size(req.page_size);
        let start = page_start(req.page_token.as_deref())?;
        let mut mine = Vec::new();
        for task_id in self.owners.tasks_of(&id) {
            let get = GetTaskRequest {
                id: task_id,
                history_length: req.history_length,
                tenant: req.tenant.clone(),
            };
            match self.inner.get_task(params, get).await {
                Ok(task) if matches(&task, &req) => mine.push(task),
                Ok(_) => {}
                Err(error) if error.code == error_code::TASK_NOT_FOUND => {}
                Err(error) => return Err(error),
            }
        }
        let total = mine.len();
        let start = start.min(total);
        let end = start.saturating_add(page_size).min(total);
        let next_page_token = if end < total {
            end.to_string()
        } else {
            String::new()
        };
        let tasks: Vec<Task> = mine.drain(start..end).collect();
        Ok(ListTasksResponse {
            tasks,
            next_page_token,
            page_size: i32::try_from(page_size).unwrap_or(i32::MAX),
            total_size: i32::try_from(total).unwrap_or(i32::MAX),
        })
    }

    async fn cancel_task(
        &self,
        params: &ServiceParams,
        req: CancelTaskRequest,
    ) -> Result<Task, A2AError> {
        self.inner.cancel_task(params, req).await
    }

    async fn subscribe_to_task(
        &self,
        params: &ServiceParams,
        req: SubscribeToTaskRequest,
    ) -> Result<BoxStream<'static, Result<StreamResponse, A2AError>>, A2AError> {
        self.inner.subscribe_to_task(params, req).await
    }

    async fn create_push_config(
        &self,
        params: &ServiceParams,
        req: TaskPushNotificationConfig,
    ) -> Result<TaskPushNotificationConfig, A2AError> {
        self.inner.create_push_config(params, req).await
    }

    async fn get_push_config(
        &self,
        params: &ServiceParams,
        req: GetTaskPushNotificationConfigRequest,
    ) -> Result<TaskPushNotificationConfig, A2AError> {
        self.inner.get_push_config(params, req).await
    }

    async fn list_push_configs(
        &self,
        params: &ServiceParams,
        req: ListTaskPushNotificationConfigsRequest,
    ) -> Result<ListTaskPushNotificationConfigsResponse, A2AError> {
        self.inner.list_push_configs(params, req).await
    }

    async fn delete_push_config(
        &self,
        params: &ServiceParams,
        req: DeleteTaskPushNotificationConfigRequest,
    ) -> Result<(), A2AError> {
        self.inner.delete_push_config(params, req).await
    }

    async fn get_extended_agent_card(
        &self,
        params: &ServiceParams,
        req: GetExtendedAgentCardRequest,
    ) -> Result<AgentCard, A2AError> {
        self.inner.get_extended_agent_card(params, req).await
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
        let a: SpiffeId = "spiffe://example.org/a".parse().unwrap();
        let b: SpiffeId = "spiffe://example.org/b".parse().unwrap();
        assert_eq!(owners.tasks_of(&a), ["t1"]);
        assert!(owners.tasks_of(&b).is_empty());
        owners.record("t2", b.clone());
        owners.record("t3", a.clone());
        assert_eq!(owners.owner("t1"), None);
        assert!(owners.owner("t3").is_some());
        // A forgotten task is no longer listed for its owner either.
        assert_eq!(owners.tasks_of(&a), ["t3"]);
        assert_eq!(owners.tasks_of(&b), ["t2"]);
        owners.record("t4", a.clone());
        assert!(owners.tasks_of(&b).is_empty());
        assert_eq!(owners.tasks_of(&a), ["t3", "t4"]);
    }
}
