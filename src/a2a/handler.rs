//! A request handler that runs the SDK's call interceptors around another one.

use std::sync::Arc;

use a2a_protocol::jsonrpc::methods;
use a2a_protocol::{
    A2AError, AgentCard, CancelTaskRequest, DeleteTaskPushNotificationConfigRequest,
    GetExtendedAgentCardRequest, GetTaskPushNotificationConfigRequest, GetTaskRequest,
    ListTaskPushNotificationConfigsRequest, ListTaskPushNotificationConfigsResponse,
    ListTasksRequest, ListTasksResponse, SendMessageRequest, SendMessageResponse, StreamResponse,
    SubscribeToTaskRequest, Task, TaskPushNotificationConfig,
};
use a2a_server::{CallContext, CallInterceptor, RequestHandler, ServiceParams};
use async_trait::async_trait;
use futures_util::stream::BoxStream;
use serde::Serialize;
use serde_json::Value;

/// A [`RequestHandler`] that runs [`CallInterceptor`]s around `H`: for every call, a
/// [`CallContext`] (the method's v1.0 name, the request's headers as service parameters) goes
/// through each interceptor's `before` in order with the request as JSON; the first error
/// refuses the call, which never reaches `H`. After `H` answered, each `after` runs in reverse
/// order with the answer as JSON (for a stream: `null` once the stream is open), and may
/// turn it into an error.
///
/// The SDK (`a2a-server-lf` 0.5) defines `CallInterceptor` and a struct of that name
/// holding interceptors, but none of its routers runs them; this handler does.
///
/// # Example
/// ```
/// use spiffe_mtls::a2a::{InterceptingHandler, PeerInterceptor, SkillPolicy};
/// use spiffe_mtls::a2a::a2a_server::{AgentExecutor, DefaultRequestHandler, InMemoryTaskStore};
///
/// fn handler(executor: impl AgentExecutor, policy: spiffe_mtls::Policy) -> impl spiffe_mtls::a2a::a2a_server::RequestHandler {
///     InterceptingHandler::new(DefaultRequestHandler::new(executor, InMemoryTaskStore::new()))
///         .with_interceptor(PeerInterceptor::new())
///         .with_interceptor(SkillPolicy::new(policy))
/// }
/// ```
pub struct InterceptingHandler<H> {
    inner: H,
    interceptors: Vec<Arc<dyn CallInterceptor>>,
}

impl<H> std::fmt::Debug for InterceptingHandler<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterceptingHandler")
            .field("interceptors", &self.interceptors.len())
            .finish_non_exhaustive()
    }
}

impl<H: RequestHandler> InterceptingHandler<H> {
    /// `inner` with no interceptor yet.
    ///
    /// # Example
    /// See [`InterceptingHandler`].
    pub fn new(inner: H) -> Self {
        Self {
            inner,
            interceptors: Vec::new(),
        }
    }

    /// Adds `interceptor` after the ones already added.
    ///
    /// # Example
    /// See [`InterceptingHandler`].
    pub fn with_interceptor(mut self, interceptor: impl CallInterceptor) -> Self {
        self.interceptors.push(Arc::new(interceptor));
        self
    }

    /// The handler the calls go to.
    ///
    /// # Example
    /// ```
    /// # use spiffe_mtls::a2a::{InterceptingHandler, a2a_server::{AgentExecutor, DefaultRequestHandler, InMemoryTaskStore}};
    /// # fn f(executor: impl AgentExecutor) {
    /// let handler = InterceptingHandler::new(DefaultRequestHandler::new(executor, InMemoryTaskStore::new()));
    /// let _inner: &DefaultRequestHandler = handler.inner();
    /// # }
    /// ```
    pub fn inner(&self) -> &H {
        &self.inner
    }

    async fn before(
        &self,
        method: &str,
        params: &ServiceParams,
        request: &impl Serialize,
    ) -> Result<CallContext, A2AError> {
        let request = serde_json::to_value(request)
            .map_err(|e| A2AError::internal(format!("cannot read the request: {e}")))?;
        let mut ctx = CallContext::new(method, params.clone());
        for interceptor in &self.interceptors {
            interceptor.before(&mut ctx, &request).await?;
        }
        Ok(ctx)
    }

    async fn after<T: Serialize>(
        &self,
        ctx: &CallContext,
        result: Result<T, A2AError>,
    ) -> Result<T, A2AError> {
        if self.interceptors.is_empty() {
            return result;
        }
        let seen: Result<Value, A2AError> = match &result {
            Ok(value) => Ok(serde_json::to_value(value).unwrap_or(Value::Null)),
            Err(error) => Err(error.clone()),
        };
        for interceptor in self.interceptors.iter().rev() {
            interceptor.after(ctx, &seen).await?;
        }
        result
    }

    async fn after_stream(
        &self,
        ctx: &CallContext,
        result: Result<BoxStream<'static, Result<StreamResponse, A2AError>>, A2AError>,
    ) -> Result<BoxStream<'static, Result<StreamResponse, A2AError>>, A2AError> {
        let seen: Result<Value, A2AError> = match &result {
            Ok(_) => Ok(Value::Null),
            Err(error) => Err(error.clone()),
        };
        for interceptor in self.interceptors.iter().rev() {
            interceptor.after(ctx, &seen).await?;
        }
        result
    }
}

#[async_trait]
impl<H: RequestHandler> RequestHandler for InterceptingHandler<H> {
    async fn send_message(
        &self,
        params: &ServiceParams,
        req: SendMessageRequest,
    ) -> Result<SendMessageResponse, A2AError> {
        let ctx = self.before(methods::SEND_MESSAGE, params, &req).await?;
        let result = self.inner.send_message(params, req).await;
        self.after(&ctx, result).await
    }

    async fn send_streaming_message(
        &self,
        params: &ServiceParams,
        req: SendMessageRequest,
    ) -> Result<BoxStream<'static, Result<StreamResponse, A2AError>>, A2AError> {
        let ctx = self
            .before(methods::SEND_STREAMING_MESSAGE, params, &req)
            .await?;
        let result = self.inner.send_streaming_message(params, req).await;
        self.after_stream(&ctx, result).await
    }

    async fn get_task(
        &self,
        params: &ServiceParams,
        req: GetTaskRequest,
    ) -> Result<Task, A2AError> {
        let ctx = self.before(methods::GET_TASK, params, &req).await?;
        let result = self.inner.get_task(params, req).await;
        self.after(&ctx, result).await
    }

    async fn list_tasks(
        &self,
        params: &ServiceParams,
        req: ListTasksRequest,
    ) -> Result<ListTasksResponse, A2AError> {
        let ctx = self.before(methods::LIST_TASKS, params, &req).await?;
        let result = self.inner.list_tasks(params, req).await;
        self.after(&ctx, result).await
    }

    async fn cancel_task(
        &self,
        params: &ServiceParams,
        req: CancelTaskRequest,
    ) -> Result<Task, A2AError> {
        let ctx = self.before(methods::CANCEL_TASK, params, &req).await?;
        let result = self.inner.cancel_task(params, req).await;
        self.after(&ctx, result).await
    }

    async fn subscribe_to_task(
        &self,
        params: &ServiceParams,
        req: SubscribeToTaskRequest,
    ) -> Result<BoxStream<'static, Result<StreamResponse, A2AError>>, A2AError> {
        let ctx = self
            .before(methods::SUBSCRIBE_TO_TASK, params, &req)
            .await?;
        let result = self.inner.subscribe_to_task(params, req).await;
        self.after_stream(&ctx, result).await
    }

    async fn create_push_config(
        &self,
        params: &ServiceParams,
        req: TaskPushNotificationConfig,
    ) -> Result<TaskPushNotificationConfig, A2AError> {
        let ctx = self
            .before(methods::CREATE_PUSH_CONFIG, params, &req)
            .await?;
        let result = self.inner.create_push_config(params, req).await;
        self.after(&ctx, result).await
    }

    async fn get_push_config(
        &self,
        params: &ServiceParams,
        req: GetTaskPushNotificationConfigRequest,
    ) -> Result<TaskPushNotificationConfig, A2AError> {
        let ctx = self.before(methods::GET_PUSH_CONFIG, params, &req).await?;
        let result = self.inner.get_push_config(params, req).await;
        self.after(&ctx, result).await
    }

    async fn list_push_configs(
        &self,
        params: &ServiceParams,
        req: ListTaskPushNotificationConfigsRequest,
    ) -> Result<ListTaskPushNotificationConfigsResponse, A2AError> {
        let ctx = self
            .before(methods::LIST_PUSH_CONFIGS, params, &req)
            .await?;
        let result = self.inner.list_push_configs(params, req).await;
        self.after(&ctx, result).await
    }

    async fn delete_push_config(
        &self,
        params: &ServiceParams,
        req: DeleteTaskPushNotificationConfigRequest,
    ) -> Result<(), A2AError> {
        let ctx = self
            .before(methods::DELETE_PUSH_CONFIG, params, &req)
            .await?;
        let result = self.inner.delete_push_config(params, req).await;
        self.after(&ctx, result).await
    }

    async fn get_extended_agent_card(
        &self,
        params: &ServiceParams,
        req: GetExtendedAgentCardRequest,
    ) -> Result<AgentCard, A2AError> {
        let ctx = self
            .before(methods::GET_EXTENDED_AGENT_CARD, params, &req)
            .await?;
        let result = self.inner.get_extended_agent_card(params, req).await;
        self.after(&ctx, result).await
    }
}
