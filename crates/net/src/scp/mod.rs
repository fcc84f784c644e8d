//! The service-provider framework (PS3.7 §7–8 from the performing side).
//!
//! An [`Scp`] serves some SOP classes: it says which presentation contexts it supports and
//! handles each request that arrives on them — reading the data set if it wants it and sending
//! one or many responses. A [`Dispatcher`] holds the SCPs of an application entity, builds the
//! acceptor policy from them and maps every incoming command to its SCP.

mod echo;
mod file_storage;
mod store;

pub use echo::EchoScp;
pub use file_storage::{FileStorage, Layout, StoredCallback, StoredInstance, safe_file_name};
pub use store::{
    StorageHandler, StorageSink, StoreFailure, StoreRequestInfo, StoreScp, StoreSuccess,
};

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tracing::{info, warn};

use dimsum_dimse::status::Status;
use dimsum_ul::negotiation::{AcceptorPolicy, SupportedContext};

use crate::{Association, Command, Error, Incoming};

/// A boxed future, as returned by [`Scp::handle`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A service class provider for one or more SOP classes.
pub trait Scp: Send + Sync + 'static {
    /// The presentation contexts this provider accepts.
    fn supported_contexts(&self) -> Vec<SupportedContext>;

    /// Handles one request. The request's data set, if it has one, is read from `association`
    /// ([`Association::read_data_fragment`] or [`Association::receive_data_set`]); responses are
    /// sent with [`Association::send_message`]. An error that ends the association ends the
    /// dispatcher's loop; any other error is logged and the dispatcher goes on.
    fn handle<'a>(
        &'a self,
        request: Command,
        association: &'a mut Association,
    ) -> BoxFuture<'a, Result<(), Error>>;
}

/// How an association served by a [`Dispatcher`] ended.
#[derive(Debug)]
pub enum Outcome {
    /// The peer released it.
    Released,
    /// It ended with an error (abort, timeout, protocol error, closed connection).
    Failed(Error),
}

/// Maps each incoming command to the SCP that serves its SOP class (by the abstract syntax of the
/// presentation context it came on).
#[derive(Clone, Default)]
pub struct Dispatcher {
    providers: Vec<Arc<dyn Scp>>,
    by_abstract_syntax: HashMap<String, usize>,
    /// The provider for SOP classes nobody else serves, and the transfer syntaxes it accepts
    /// for them (promiscuous mode).
    fallback: Option<(Arc<dyn Scp>, Vec<String>)>,
}

impl Dispatcher {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a provider; for a SOP class served by two providers, the first one added wins.
    pub fn with(mut self, provider: impl Scp) -> Self {
        let index = self.providers.len();
        for context in provider.supported_contexts() {
            self.by_abstract_syntax
                .entry(context.abstract_syntax)
                .or_insert(index);
        }
        self.providers.push(Arc::new(provider));
        self
    }

    /// Serves every SOP class no other provider serves with `provider`, accepting it with
    /// `transfer_syntaxes` (in our order of preference): promiscuous mode, e.g. for storing SOP
    /// classes that are private or newer than our dictionary.
    pub fn with_fallback(mut self, provider: impl Scp, transfer_syntaxes: Vec<String>) -> Self {
        self.fallback = Some((Arc::new(provider), transfer_syntaxes));
        self
    }

    /// Every presentation context of every provider.
    pub fn supported_contexts(&self) -> Vec<SupportedContext> {
        let mut seen = std::collections::HashSet::new();
        self.providers
            .iter()
            .flat_map(|provider| provider.supported_contexts())
            .filter(|context| seen.insert(context.abstract_syntax.clone()))
            .collect()
    }

    /// An acceptor policy for `ae_title` that supports every provider's contexts.
    pub fn policy(&self, ae_title: &str) -> AcceptorPolicy {
        let policy = self
            .supported_contexts()
            .into_iter()
            .fold(AcceptorPolicy::new(ae_title), |policy, context| {
                policy.support(context)
            });
        match &self.fallback {
            Some((_, transfer_syntaxes)) => {
                policy.with_promiscuous_transfer_syntaxes(transfer_syntaxes.clone())
            }
            None => policy,
        }
    }

    /// Serves an established association until the peer releases it or it fails.
    pub async fn serve(&self, association: &mut Association) -> Outcome {
        let idle = association.timeouts().idle;
        loop {
            let command = match association.receive_incoming(idle, "the next command").await {
                Ok(Incoming::Command(command)) => command,
                Ok(Incoming::Released) => return Outcome::Released,
                Err(error) => return Outcome::Failed(error),
            };
            if let Err(error) = self.dispatch(command, association).await {
                if error.ends_association() {
                    return Outcome::Failed(error);
                }
                warn!(%error, "request failed");
            }
        }
    }

    async fn dispatch(&self, command: Command, association: &mut Association) -> Result<(), Error> {
        let abstract_syntax = association
            .negotiated()
            .context(command.presentation_context_id)
            .map(|context| context.abstract_syntax.clone())
            .unwrap_or_default();
        let provider = self
            .by_abstract_syntax
            .get(&abstract_syntax)
            .and_then(|&i| self.providers.get(i))
            .or(self.fallback.as_ref().map(|(provider, _)| provider));
        match provider {
            Some(provider) => {
                let provider = Arc::clone(provider);
                provider.handle(command, association).await?;
                // A handler that did not read its data set leaves it to us.
                association.discard_data_set().await
            }
            None => {
                info!(%abstract_syntax, "no provider for this SOP class");
                refuse(command, association, Status::SOP_CLASS_NOT_SUPPORTED).await
            }
        }
    }
}

/// Answers a request that cannot be served with a failure `status` (the response of the
/// request's type), after reading and discarding its data set.
pub async fn refuse(
    command: Command,
    association: &mut Association,
    status: Status,
) -> Result<(), Error> {
    association.discard_data_set().await?;
    match command.message.response_with_status(status) {
        Some(response) => {
            association
                .send_message(command.presentation_context_id, &response, None)
                .await
        }
        None => Err(Error::UnexpectedMessage(format!(
            "{:?} is not a request",
            command.message.command_field()
        ))),
    }
}
