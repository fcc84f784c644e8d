//! Storage Commitment (PS3.4 Annex J) answered from the archive's index: an instance is
//! committed when the archive holds it under the SOP class the requestor names.

use dimsum_net::scp::{CommitmentHandler, CommitmentRequest, FailureReason};
use dimsum_net::storage::BoxFuture;
use tracing::warn;

use crate::archive::Archive;

/// The [`CommitmentHandler`] of an [`Archive`]: 0x0112 (no such object instance) for an
/// instance it does not hold, 0x0119 (class/instance conflict) for one it holds under another
/// SOP class, 0x0110 when the index cannot be read.
#[derive(Clone)]
pub struct ArchiveCommitment {
    archive: Archive,
}

impl ArchiveCommitment {
    pub fn new(archive: Archive) -> Self {
        Self { archive }
    }
}

impl CommitmentHandler for ArchiveCommitment {
    fn commit<'a>(
        &'a self,
        request: &'a CommitmentRequest,
    ) -> BoxFuture<'a, Vec<Result<(), FailureReason>>> {
        Box::pin(async move {
            let mut outcomes = Vec::with_capacity(request.references.len());
            for reference in &request.references {
                let outcome = match self.archive.lookup(&reference.sop_instance_uid).await {
                    Ok(Some(stored))
                        if stored.sop_class_uid.trim_end_matches(['\0', ' '])
                            == reference.sop_class_uid.trim_end_matches(['\0', ' ']) =>
                    {
                        Ok(())
                    }
                    Ok(Some(_)) => Err(FailureReason::CLASS_INSTANCE_CONFLICT),
                    Ok(None) => Err(FailureReason::NO_SUCH_OBJECT_INSTANCE),
                    Err(error) => {
                        warn!("storage commitment: cannot read the index: {error}");
                        Err(FailureReason::PROCESSING_FAILURE)
                    }
                };
                outcomes.push(outcome);
            }
            outcomes
        })
    }
}
