//! openraft's own storage test suite against [`LogStore`] and [`MachineStore`].

use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;

use super::testing::Recorder;
use super::{LogStore, MachineStore, StorageError, TypeConfig};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, MachineStore<Recorder>, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, MachineStore<Recorder>), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| {
            StorageError::from_io_error(
                openraft::ErrorSubject::Store,
                openraft::ErrorVerb::Write,
                e,
            )
        })?;
        let log = LogStore::open(dir.path()).await.map_err(|e| {
            StorageError::from_io_error(
                openraft::ErrorSubject::Logs,
                openraft::ErrorVerb::Read,
                std::io::Error::other(e.to_string()),
            )
        })?;
        let sm = MachineStore::open(dir.path(), Recorder::default()).map_err(|e| {
            StorageError::from_io_error(
                openraft::ErrorSubject::StateMachine,
                openraft::ErrorVerb::Read,
                std::io::Error::other(e.to_string()),
            )
        })?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).unwrap();
}
