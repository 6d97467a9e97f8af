//! Byte strings larger than one gRPC message (template archives, terraform
//! states): the sender announces the size and sha256 in a header and sends
//! the bytes in chunks of at most [`CHUNK_BYTES`]; the receiver assembles
//! them under a limit and checks both before anything uses the bytes, so a
//! short, long or corrupted transfer is an error, never a truncated blob.

use sha2::{Digest, Sha256};

use crate::grpc::CHUNK_BYTES;
use crate::proto::{
    FinishJobPart, FinishJobRequest, PushTemplatePart, PushTemplateRequest, finish_job_part,
    push_template_part,
};

/// Lowercase hex sha256, the form headers carry.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `bytes` in wire-sized pieces (none for an empty string).
pub fn pieces(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes.chunks(CHUNK_BYTES)
}

/// `bytes` in wire-sized pieces, produced one at a time as a stream is
/// read, so a large blob is never copied whole into messages up front.
pub fn owned_pieces(bytes: Vec<u8>) -> impl Iterator<Item = Vec<u8>> + Send {
    let n = bytes.len().div_ceil(CHUNK_BYTES);
    (0..n).map(move |i| bytes[i * CHUNK_BYTES..((i + 1) * CHUNK_BYTES).min(bytes.len())].to_vec())
}

/// Why assembled bytes were refused. `what` names them ("state",
/// "template archive").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("{what} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },
    /// More bytes arrived than announced (`got` counts them so far), or
    /// fewer by the end.
    #[error("{what} is {got} bytes, expected {expected}")]
    Size {
        what: &'static str,
        got: u64,
        expected: u64,
    },
    #[error("{what} has sha256 {got}, expected {expected}")]
    Hash {
        what: &'static str,
        got: String,
        expected: String,
    },
}

/// Collects the chunks of one announced byte string.
#[derive(Debug)]
pub struct Assembly {
    what: &'static str,
    expected: u64,
    sha256: String,
    buf: Vec<u8>,
    hasher: Sha256,
}

/// Memory reserved up front at most: the announced size is the sender's
/// word, so a large one is only believed as the bytes arrive.
const MAX_RESERVE: u64 = 16 * 1024 * 1024;

impl Assembly {
    /// Expects `size` bytes hashing to `sha256`; refuses a size over `limit`
    /// before any byte arrives.
    pub fn new(
        what: &'static str,
        size: u64,
        sha256: &str,
        limit: u64,
    ) -> Result<Assembly, ChunkError> {
        if size > limit {
            return Err(ChunkError::TooLarge { what, size, limit });
        }
        Ok(Assembly {
            what,
            expected: size,
            sha256: sha256.to_ascii_lowercase(),
            buf: Vec::with_capacity(size.min(MAX_RESERVE) as usize),
            hasher: Sha256::new(),
        })
    }

    /// Adds the next chunk; refuses one that would go past the announced
    /// size (which is never over the limit).
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), ChunkError> {
        let got = self.buf.len() as u64 + chunk.len() as u64;
        if got > self.expected {
            return Err(ChunkError::Size {
                what: self.what,
                got,
                expected: self.expected,
            });
        }
        self.hasher.update(chunk);
        self.buf.extend_from_slice(chunk);
        Ok(())
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.buf.len() as u64
    }

    /// The bytes, once all arrived and their hash matches.
    pub fn finish(self) -> Result<Vec<u8>, ChunkError> {
        let got = self.buf.len() as u64;
        if got != self.expected {
            return Err(ChunkError::Size {
                what: self.what,
                got,
                expected: self.expected,
            });
        }
        let hash = hex::encode(self.hasher.finalize());
        if hash != self.sha256 {
            return Err(ChunkError::Hash {
                what: self.what,
                got: hash,
                expected: self.sha256,
            });
        }
        Ok(self.buf)
    }
}

/// FinishJob's stream: `header` with the state's presence, size and hash
/// filled in, then the state's chunks.
pub fn finish_job_parts(mut header: FinishJobRequest, state: Option<&[u8]>) -> Vec<FinishJobPart> {
    let bytes = state.unwrap_or_default();
    header.has_state = state.is_some();
    header.state_size = bytes.len() as u64;
    header.state_sha256 = sha256_hex(bytes);
    let mut parts = vec![FinishJobPart {
        part: Some(finish_job_part::Part::Header(header)),
    }];
    parts.extend(pieces(bytes).map(|c| FinishJobPart {
        part: Some(finish_job_part::Part::State(c.to_vec())),
    }));
    parts
}

/// PushTemplate's stream: `header` with the archive's size and hash filled
/// in, then the archive's chunks.
pub fn push_template_parts(
    mut header: PushTemplateRequest,
    archive: &[u8],
) -> Vec<PushTemplatePart> {
    header.archive_size = archive.len() as u64;
    header.archive_sha256 = sha256_hex(archive);
    let mut parts = vec![PushTemplatePart {
        part: Some(push_template_part::Part::Header(header)),
    }];
    parts.extend(pieces(archive).map(|c| PushTemplatePart {
        part: Some(push_template_part::Part::Archive(c.to_vec())),
    }));
    parts
}

#[cfg(test)]
mod tests;
