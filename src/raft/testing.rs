//! A [`Machine`] for tests of this layer and of code built on it: [`Recorder`] keeps every
//! payload it applied with its index and answers each with the index.

use super::sm::{Machine, MachineError};

/// Records what was applied: `(index, payload)` in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recorder {
    /// The applied payloads with their log indexes.
    pub applied: Vec<(u64, Vec<u8>)>,
}

impl Recorder {
    /// The payloads alone, in order.
    pub fn payloads(&self) -> Vec<Vec<u8>> {
        self.applied.iter().map(|(_, p)| p.clone()).collect()
    }
}

impl Machine for Recorder {
    fn apply(&mut self, index: u64, payload: &[u8]) -> Vec<u8> {
        self.applied.push((index, payload.to_vec()));
        index.to_le_bytes().to_vec()
    }

    fn snapshot(&self) -> Vec<u8> {
        bincode::serialize(&self.applied).unwrap_or_default()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), MachineError> {
        self.applied = super::decode(snapshot)?;
        Ok(())
    }
}
