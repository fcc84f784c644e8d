//! The services that `qrscp` and `serve` both offer, on one dispatcher.

use dimsum_net::MoveRetry;
use dimsum_net::dataset::{QueryModel, QueryService, sop_class, transfer_syntax};
use dimsum_net::scp::{
    Dispatcher, EchoScp, FindHandler, FindScp, GetScp, MoveScp, RetrieveHandler, StoreScp,
};
use dimsum_net::storage::Storage;
use dimsum_net::ul::negotiation::FindOptions;
use dimsum_net::ul::uids::{EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN};

/// The transfer syntaxes accepted for identifiers (C-FIND, C-GET, C-MOVE), in our order.
pub fn query_syntaxes() -> Vec<String> {
    vec![
        EXPLICIT_VR_LITTLE_ENDIAN.to_owned(),
        IMPLICIT_VR_LITTLE_ENDIAN.to_owned(),
    ]
}

/// The C-FIND extended negotiation the archive accepts by default (PS3.4 C.5.1.1): relational
/// queries, combined date-time matching and fuzzy semantic person name matching (each word of
/// the key begins a word of the name, without regard to case or accents, as QIDO-RS's
/// `fuzzymatching`); timezone query adjustment is answered "not supported".
pub const ARCHIVE_FIND_OPTIONS: FindOptions = FindOptions {
    relational_queries: true,
    combined_date_time: true,
    fuzzy_person_names: true,
    timezone_adjustment: false,
};

/// C-ECHO; C-STORE of every storage SOP class in every transfer syntax we know into `storage`;
/// and C-FIND, C-GET (its sub-operations on the same contexts) and C-MOVE of the Patient Root,
/// Study Root and Patient/Study Only models over `archive`, C-MOVE retrying its destination as
/// `retry` says, the C-FIND SCP accepting `find_options` (of those the archive implements:
/// relational queries and combined date-time matching) when a peer proposes them.
pub fn archive_dispatcher_with<S, A>(
    storage: S,
    archive: A,
    retry: MoveRetry,
    find_options: FindOptions,
) -> Dispatcher
where
    S: Storage,
    A: FindHandler + RetrieveHandler + Clone,
{
    let find_options = find_options.intersection(ARCHIVE_FIND_OPTIONS);
    let storage_classes: Vec<String> = sop_class::storage_sop_classes()
        .into_iter()
        .map(String::from)
        .collect();
    let all_syntaxes: Vec<String> = transfer_syntax::known_transfer_syntaxes()
        .into_iter()
        .map(String::from)
        .collect();
    let qr_classes = |service| -> Vec<String> {
        [
            QueryModel::PatientRoot,
            QueryModel::StudyRoot,
            QueryModel::PatientStudyOnly,
        ]
        .into_iter()
        .filter_map(|model| model.sop_class(service))
        .map(String::from)
        .collect()
    };
    Dispatcher::new()
        .with(EchoScp::new())
        .with(StoreScp::new(
            storage,
            storage_classes.clone(),
            all_syntaxes.clone(),
        ))
        .with(
            FindScp::new(
                archive.clone(),
                qr_classes(QueryService::Find),
                query_syntaxes(),
            )
            .with_find_options(find_options),
        )
        .with(
            GetScp::new(
                archive.clone(),
                qr_classes(QueryService::Get),
                query_syntaxes(),
            )
            .with_storage(storage_classes, all_syntaxes),
        )
        .with(
            MoveScp::new(archive, qr_classes(QueryService::Move), query_syntaxes())
                .with_retry(retry),
        )
}
