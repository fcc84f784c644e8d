//! `dimsum getscu`: Query/Retrieve C-GET SCU (PS3.4 C.4.3), like DCMTK's getscu: the instances
//! come back on the same association and are written into a folder.

use tracing::error;

use dimsum_net::dataset::QueryService;
use dimsum_net::scu;
use dimsum_net::ul::pdu::AsyncOpsWindow;

use crate::exit::Code;
use crate::logging::{self, Verbosity};
use crate::qr_options::{self, RetrieveQueryOptions};
use crate::retrieve::{self, ReceiveOptions};

/// Options of `dimsum getscu`.
#[derive(clap::Args, Debug)]
pub struct Options {
    #[command(flatten)]
    pub query: RetrieveQueryOptions,
    #[command(flatten)]
    pub receive: ReceiveOptions,
    /// Storage SOP classes to receive (repeatable) [default: the common storage SOP classes].
    #[arg(long = "sop-class", value_name = "UID")]
    pub sop_classes: Vec<String>,
    /// Transfer syntaxes to accept the instances in, in order of preference (repeatable)
    /// [default: Explicit then Implicit VR Little Endian].
    #[arg(long = "accept-ts", value_name = "UID")]
    pub accept_ts: Vec<String>,
    /// C-STORE sub-operations the peer may have outstanding at once (the asynchronous
    /// operations window proposed, PS3.7 D.3.3.3); peers that grant none send one at a time.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub window: u16,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

pub async fn run(options: Options) -> Code {
    logging::init(options.verbosity);
    let query = match options.query.query() {
        Ok(query) => query,
        Err(code) => return code,
    };
    let model = query.model;
    let storage = match options.receive.storage() {
        Ok(storage) => storage,
        Err(code) => return code,
    };
    let storage_contexts = if options.sop_classes.is_empty() && options.accept_ts.is_empty() {
        scu::default_storage_contexts()
    } else {
        let sop_classes: Vec<&str> = if options.sop_classes.is_empty() {
            scu::common_storage_sop_classes().to_vec()
        } else {
            options.sop_classes.iter().map(String::as_str).collect()
        };
        let transfer_syntaxes: Vec<&str> = if options.accept_ts.is_empty() {
            scu::STORAGE_TRANSFER_SYNTAXES.to_vec()
        } else {
            options.accept_ts.iter().map(String::as_str).collect()
        };
        scu::storage_contexts(&sop_classes, &transfer_syntaxes)
    };
    // We invoke one C-GET; the peer may perform up to `window` C-STOREs towards us at once.
    let window = AsyncOpsWindow {
        max_operations_invoked: 1,
        max_operations_performed: options.window,
    };
    let association = match options
        .query
        .peer
        .open("GETSCU", |request| {
            scu::propose_get(
                request.with_async_ops_window(window),
                model,
                &storage_contexts,
            )
        })
        .await
    {
        Ok(association) => association,
        Err(code) => return code,
    };
    if let Err(error) =
        association.context_for(model.sop_class(QueryService::Get).unwrap_or_default())
    {
        error!("the peer accepted no C-GET context for this information model: {error}");
        association.abort().await;
        return Code::Rejected;
    }
    let mut progress = options.receive.progress();
    let code = match scu::get(&association, &query, storage, |p| progress.update(p)).await {
        Ok(outcome) => retrieve::summarize("Get", &outcome, options.verbosity.quiet),
        Err(error) => {
            let code = qr_options::query_failed(&error);
            if association.ending().is_some() {
                return code;
            }
            code
        }
    };
    if association.ending().is_some() {
        return code;
    }
    qr_options::finish(association, options.query.abort, code).await
}
